"""Typed records that flow through the avatar subsystem.

Frames: every body model outputs points in one *body frame* shared by all backends, aligned with the
OpenCV camera (x right, y down, z away from the camera) so that a body at rest stands upright and
faces the camera. A person's placement is the camera's translation; their rotation is
``AvatarParams.global_orient``. Pixels follow OpenCV too: pixel (i, j) has its centre at (j+0.5, i+0.5).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class AvatarParams:
    """What poses and shapes one avatar per batch row."""

    global_orient: torch.Tensor  # (B, 3) axis-angle, body frame, about the body origin (the pelvis)
    body_pose: torch.Tensor  # (B, J, 3) axis-angle per posable joint of the body model, in its own axes
    shape: torch.Tensor  # (B, S) Anny phenotypes in 0..1, or SMPL betas

    def __len__(self) -> int:
        return int(self.global_orient.shape[0])

    def detach(self) -> AvatarParams:
        return AvatarParams(self.global_orient.detach(), self.body_pose.detach(), self.shape.detach())


@dataclass
class BodyOutput:
    """A body model's forward pass, in the body frame (metres)."""

    vertices: torch.Tensor  # (B, V, 3)
    keypoints: torch.Tensor  # (B, 17, 3), COCO order
    faces: torch.Tensor  # (F, 3) int64, shared by the batch


@dataclass
class Camera:
    """A pinhole camera per person; the translation places that person's body frame in front of it."""

    focal: torch.Tensor  # (N, 2) fx, fy in pixels
    principal: torch.Tensor  # (N, 2) cx, cy in pixels
    translation: torch.Tensor  # (N, 3) body origin in camera coordinates, metres

    def __len__(self) -> int:
        return int(self.focal.shape[0])

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """(N, P, 3) body-frame points -> camera coordinates."""
        return points + self.translation[:, None, :]

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(N, P, 3) body-frame points -> (N, P, 2) pixel coordinates."""
        cam = self.to_camera(points)
        return cam[..., :2] / cam[..., 2:3].clamp_min(1e-6) * self.focal[:, None] + self.principal[:, None]

    def crop(self, boxes: torch.Tensor, size: tuple[int, int]) -> Camera:
        """The camera whose (H, W) = ``size`` image is the (N, 4) xyxy ``boxes`` region resampled."""
        height, width = size
        scale = torch.stack(
            [width / (boxes[:, 2] - boxes[:, 0]), height / (boxes[:, 3] - boxes[:, 1])], dim=1
        )
        return replace(self, focal=self.focal * scale, principal=(self.principal - boxes[:, :2]) * scale)


@dataclass
class Meshes:
    """Avatars ready to render: one mesh per person, sharing one topology."""

    vertices: torch.Tensor  # (N, V, 3) body frame
    faces: torch.Tensor  # (F, 3) int64
    colors: torch.Tensor  # (N, V, 3) linear RGB in 0..1 (unshaded albedo)


@dataclass
class RenderOutput:
    """Per-person renders at crop resolution, as the compositing kernels take them."""

    rgb: torch.Tensor  # (N, 3, H, W) float in 0..1, not premultiplied, black where alpha is 0
    alpha: torch.Tensor  # (N, 1, H, W) float: 0 or 1, or edge coverage in between when supersampled
    depth: torch.Tensor  # (N, 1, H, W) camera-space z in metres (mean over covered samples), 0 where alpha is 0
