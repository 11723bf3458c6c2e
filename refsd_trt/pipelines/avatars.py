"""What the refsd and lite methods need from an avatar renderer: ``BodyModelAvatars`` over the
avatar package (refsd_trt.avatar: body fitting, rendering), and a clearly named stand-in for tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from refsd_trt.attributes import PersonPrompt
from refsd_trt.pipelines.crops import crop_masks
from refsd_trt.types import PersonDetections


@dataclass
class AvatarCrops:
    """One image's avatars rendered into its people's crop boxes."""

    rgb: torch.Tensor  # (n, 3, S, S) float in [0, 1], black where alpha is 0
    alpha: torch.Tensor  # (n, 1, S, S) float in [0, 1]


class Avatars(Protocol):
    def __call__(self, detections: PersonDetections, boxes: torch.Tensor, size: int,
                 prompts: Sequence[PersonPrompt]) -> AvatarCrops:
        """Identity-free avatars for one image's people, posed from ``detections`` and rendered into
        the (n, 4) crop ``boxes`` (image pixels) at ``size`` × ``size``, dressed per ``prompts``."""


class BodyModelAvatars:
    """The real avatars: a body model (Anny by default) shaped and dressed from each person's
    sampled attributes, posed from their keypoints (or standing in their box), rendered per crop."""

    def __init__(self, body=None, rasterizer=None):
        self._body, self.rasterizer = body, rasterizer

    def body(self, device: torch.device):
        if self._body is None:  # Anny builds in about 0.4 s once its cache exists: only when needed
            from refsd_trt.avatar import anny_body

            self._body = anny_body(device=str(device))
        return self._body

    def __call__(self, detections: PersonDetections, boxes: torch.Tensor, size: int,
                 prompts: Sequence[PersonPrompt]) -> AvatarCrops:
        from refsd_trt.avatar import avatar_meshes, fit_avatars, render

        device = detections.boxes.device
        if not len(detections):
            return AvatarCrops(torch.zeros((0, 3, size, size), device=device), torch.zeros((0, 1, size, size), device=device))
        body = self.body(device)
        attributes, seeds = [p.attributes for p in prompts], [p.seed for p in prompts]
        shapes = torch.stack([body.sample_shape(a, s) for a, s in zip(attributes, seeds, strict=True)])
        keypoints = None if detections.keypoints is None else detections.keypoints.to(body.device, body.dtype)
        image_size = tuple(detections.masks.shape[-2:])
        fit = fit_avatars(body, detections.boxes.to(body.device, body.dtype), image_size, shapes, keypoints)
        out = render(avatar_meshes(body, fit.params, attributes, seeds),
                     fit.camera.crop(boxes.to(body.device, body.dtype), (size, size)), (size, size), self.rasterizer)
        return AvatarCrops(out.rgb.to(device), out.alpha.to(device))


@dataclass(frozen=True)
class StandInAvatar:
    """NOT an avatar: a flat grey silhouette filling each person's own mask.

    It keeps the person's outline, so it anonymizes nothing about body shape; it is for tests of
    the pipelines that should not depend on the body model."""

    grey: float = 0.5

    def __call__(self, detections: PersonDetections, boxes: torch.Tensor, size: int,
                 prompts: Sequence[PersonPrompt]) -> AvatarCrops:
        alpha = crop_masks([detections.masks[:, None].float()], [boxes], size)
        return AvatarCrops(rgb=self.grey * alpha.expand(-1, 3, -1, -1), alpha=alpha)
