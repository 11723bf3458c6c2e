"""What the refsd and lite methods need from an avatar renderer: ``BodyModelAvatars`` over the
avatar package (refsd_trt.avatar: body fitting, rendering), and a clearly named stand-in for tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from refsd_trt.attributes import PersonPrompt
from refsd_trt.pipelines.crops import crop_masks
from refsd_trt.types import PersonDetections

if TYPE_CHECKING:
    from refsd_trt.avatar.body_model import BodyModel


@dataclass
class AvatarCrops:
    """One image's avatars rendered into its people's crop boxes."""

    rgb: torch.Tensor  # (n, 3, S, S) float in [0, 1], black where alpha is 0
    alpha: torch.Tensor  # (n, 1, S, S) float in [0, 1]


class Avatars(Protocol):
    def __call__(self, detections: Sequence[PersonDetections], boxes: Sequence[torch.Tensor], size: int,
                 prompts: Sequence[Sequence[PersonPrompt]]) -> list[AvatarCrops]:
        """Identity-free avatars for a batch of images' people, one ``AvatarCrops`` per image: image
        i's people posed from ``detections[i]`` and rendered into its (n_i, 4) crop ``boxes[i]``
        (image pixels) at ``size`` × ``size``, dressed per ``prompts[i]``."""


def split_per_image(crops: AvatarCrops, detections: Sequence[PersonDetections]) -> list[AvatarCrops]:
    """The crops of all images' people, in image order, cut back into one ``AvatarCrops`` per image."""
    counts = [len(d) for d in detections]
    return [AvatarCrops(rgb, alpha) for rgb, alpha in zip(crops.rgb.split(counts), crops.alpha.split(counts))]


class BodyModelAvatars:
    """The real avatars: a body model (Anny by default) shaped and dressed from each person's
    sampled attributes, posed from their keypoints (or standing in their box), rendered per crop.

    All people of a batch are fitted in one optimisation and rendered in one call: a fitting step
    costs per op far more than per person, and each person's fit is the same as alone."""

    def __init__(self, body=None, rasterizer=None):
        self._body, self.rasterizer = body, rasterizer

    def body(self, device: torch.device):
        if self._body is None:  # Anny builds in about 0.4 s once its cache exists: only when needed
            from refsd_trt.avatar import anny_body

            self._body = anny_body(device=str(device))
        return self._body

    def __call__(self, detections: Sequence[PersonDetections], boxes: Sequence[torch.Tensor], size: int,
                 prompts: Sequence[Sequence[PersonPrompt]]) -> list[AvatarCrops]:
        from refsd_trt.avatar import avatar_meshes, fit_avatars, render

        if not any(len(d) for d in detections):
            return [AvatarCrops(torch.zeros((0, 3, size, size), device=d.boxes.device),
                                torch.zeros((0, 1, size, size), device=d.boxes.device)) for d in detections]
        device = detections[0].boxes.device
        body = self.body(device)
        flat = [p for per_image in prompts for p in per_image]
        attributes, seeds = [p.attributes for p in flat], [p.seed for p in flat]
        shapes = torch.stack([body.sample_shape(a, s) for a, s in zip(attributes, seeds, strict=True)])
        people = torch.cat([d.boxes for d in detections]).to(body.device, body.dtype)
        # Each person keeps their own image's (height, width): the cut-off test and the intrinsics read it.
        sizes = torch.tensor([d.masks.shape[-2:] for d in detections for _ in range(len(d))])
        fit = fit_avatars(body, people, sizes, shapes, _keypoints(detections, body))
        crops = torch.cat(list(boxes)).to(body.device, body.dtype)
        out = render(avatar_meshes(body, fit.params, attributes, seeds), fit.camera.crop(crops, (size, size)),
                     (size, size), self.rasterizer)
        return split_per_image(AvatarCrops(out.rgb.to(device), out.alpha.to(device)), detections)


def _keypoints(detections: Sequence[PersonDetections], body: BodyModel) -> torch.Tensor | None:
    """(N, 17, 3) keypoints of all images' people, or None where no image has any. People of an image
    without keypoints get zero confidences: too few to fit, they stand in their boxes as they would
    alone."""
    if all(d.keypoints is None for d in detections):
        return None
    return torch.cat([d.keypoints if d.keypoints is not None else d.boxes.new_zeros((len(d), 17, 3))
                      for d in detections]).to(body.device, body.dtype)


@dataclass(frozen=True)
class StandInAvatar:
    """NOT an avatar: a flat grey silhouette filling each person's own mask.

    It keeps the person's outline, so it anonymizes nothing about body shape; it is for tests of
    the pipelines that should not depend on the body model."""

    grey: float = 0.5

    def __call__(self, detections: Sequence[PersonDetections], boxes: Sequence[torch.Tensor], size: int,
                 prompts: Sequence[Sequence[PersonPrompt]]) -> list[AvatarCrops]:
        alpha = crop_masks([d.masks[:, None].float() for d in detections], boxes, size)
        return split_per_image(AvatarCrops(rgb=self.grey * alpha.expand(-1, 3, -1, -1), alpha=alpha), detections)
