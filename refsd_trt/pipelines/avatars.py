"""What the refsd method needs from an avatar renderer, and a stand-in until the avatar package
(refsd_trt.avatar: body fitting, rendering) is wired in."""

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


@dataclass(frozen=True)
class StandInAvatar:
    """NOT an avatar: a flat grey silhouette filling each person's own mask.

    It keeps the person's outline, so it anonymizes nothing about body shape; it exists so the
    refsd pipeline runs end to end (and is tested) before a real renderer is plugged in."""

    grey: float = 0.5

    def __call__(self, detections: PersonDetections, boxes: torch.Tensor, size: int,
                 prompts: Sequence[PersonPrompt]) -> AvatarCrops:
        alpha = crop_masks([detections.masks[:, None].float()], [boxes], size)
        return AvatarCrops(rgb=self.grey * alpha.expand(-1, 3, -1, -1), alpha=alpha)
