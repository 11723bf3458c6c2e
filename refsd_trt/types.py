"""Typed records that flow between pipeline stages.

Tensors stay on the pipeline's device; only the records written to the manifest are host values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def _optional(tensor: torch.Tensor | None, apply) -> torch.Tensor | None:
    return None if tensor is None else apply(tensor)


@dataclass
class PersonDetections:
    """People found in one image, in that image's pixel coordinates."""

    boxes: torch.Tensor  # (n, 4) float32, xyxy
    scores: torch.Tensor  # (n,) float32
    masks: torch.Tensor  # (n, H, W) bool, at the image's full resolution
    keypoints: torch.Tensor | None = None  # (n, 17, 3) float32: x, y, confidence (COCO order)
    mask_source: str = "segmentation"  # how masks were made: segmentation | grabcut | box
    # (n,) bool: people scored between the detector's floor and its confidence threshold, kept
    # so the pipeline can cover them (fill) rather than trust them enough to render an avatar.
    low_confidence: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def subset(self, keep: torch.Tensor) -> PersonDetections:
        """The people where ``keep`` ((n,) bool) is True, every per-person field alike."""
        return PersonDetections(self.boxes[keep], self.scores[keep], self.masks[keep],
                                _optional(self.keypoints, lambda t: t[keep]), self.mask_source,
                                _optional(self.low_confidence, lambda t: t[keep]))

    def to(self, device: torch.device | str) -> PersonDetections:
        return PersonDetections(self.boxes.to(device), self.scores.to(device), self.masks.to(device),
                                _optional(self.keypoints, lambda t: t.to(device)), self.mask_source,
                                _optional(self.low_confidence, lambda t: t.to(device)))

    @staticmethod
    def empty(height: int, width: int, device: torch.device | str = "cpu") -> PersonDetections:
        return PersonDetections(
            boxes=torch.zeros((0, 4), device=device),
            scores=torch.zeros((0,), device=device),
            masks=torch.zeros((0, height, width), dtype=torch.bool, device=device),
        )


@dataclass
class PersonRecord:
    """What the manifest says about one person (host values only)."""

    box: tuple[float, float, float, float]
    score: float
    coverage: float  # fraction of the image covered by the person's mask
    prompt: str = ""
    seed: int = 0
    attributes: dict[str, str] = field(default_factory=dict)
    fallback: str | None = None  # set when a stage failed and a safe fill replaced the person
    notes: list[str] = field(default_factory=list)
    # The identity gate's finding: {"verified": True, "distance", "null_distance", "threshold", "matched"},
    # or {"verified": False, "why"} (no face to compare, gate off, filled before it ran).
    identity: dict = field(default_factory=dict)
