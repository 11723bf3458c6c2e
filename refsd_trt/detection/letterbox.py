"""Letterbox on the device: resize keeping the aspect ratio, pad with grey to a stride multiple.

The geometry follows ultralytics' ``LetterBox`` (centered padding, each resized side rounded and
kept at least one pixel, ``round(pad - 0.1)`` on the top/left side) so that boxes and masks map
back exactly as ultralytics' predictor maps them. The per-image numbers are Python scalars computed
from shapes, never read back from the device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PAD_VALUE = 114  # ultralytics' grey: the value the YOLO models were trained to see as padding


@dataclass(frozen=True)
class Placement:
    """Where one image sits inside the letterboxed batch."""

    size: tuple[int, int]  # original (height, width)
    resized: tuple[int, int]  # (height, width) after the aspect-preserving resize
    offset: tuple[int, int]  # (left, top) padding in letterbox pixels

    @property
    def gain(self) -> tuple[float, float]:
        """(x, y) scale from original to letterbox pixels; each side was rounded on its own."""
        return self.resized[1] / self.size[1], self.resized[0] / self.size[0]

    def to_image(self, xy: torch.Tensor) -> torch.Tensor:
        """Map (..., 2k) interleaved x, y letterbox coordinates to original-image coordinates, clipped."""
        (gx, gy), (left, top) = self.gain, self.offset
        x = ((xy[..., 0::2] - left) / gx).clamp_(0, self.size[1])
        y = ((xy[..., 1::2] - top) / gy).clamp_(0, self.size[0])
        return torch.stack((x, y), dim=-1).flatten(-2)


@dataclass(frozen=True)
class Letterboxed:
    images: torch.Tensor  # (B, 3, H, W) float in 0..1
    placements: tuple[Placement, ...]


def resized_size(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    r = min(target[0] / size[0], target[1] / size[1])
    return max(round(size[0] * r), 1), max(round(size[1] * r), 1)


def minimal_shape(sizes: Sequence[tuple[int, int]], imgsz: int, stride: int) -> tuple[int, int]:
    """The smallest stride-multiple shape that holds every image letterboxed to ``imgsz``: what
    ultralytics' ``auto=True`` (minimum rectangle) gives one image, extended to a batch."""
    resized = [resized_size(s, (imgsz, imgsz)) for s in sizes]
    return tuple(max(math.ceil(r[i] / stride) * stride for r in resized) for i in (0, 1))  # type: ignore[return-value]


def letterbox(images: Sequence[torch.Tensor], shape: tuple[int, int], dtype: torch.dtype = torch.float32,
              fit: tuple[int, int] | None = None) -> Letterboxed:
    """Letterbox (3, h, w) uint8 images into one (B, 3, *shape) batch of ``dtype`` in 0..1.

    Each image is resized to fit ``fit`` (default ``shape``) and centered in ``shape``; a dynamic
    engine passes the batch's minimal shape as ``shape`` and the nominal size as ``fit``.
    """
    fit = fit or shape
    device = images[0].device
    out = torch.full((len(images), 3, *shape), PAD_VALUE / 255, dtype=dtype, device=device)
    placements = []
    for i, img in enumerate(images):
        size = (int(img.shape[1]), int(img.shape[2]))
        new = resized_size(size, fit)
        top, left = (round((shape[0] - new[0]) / 2 - 0.1), round((shape[1] - new[1]) / 2 - 0.1))
        x = img[None].float()
        if new != size:
            # Bilinear without antialiasing is cv2.INTER_LINEAR, which differs only by its uint8
            # rounding. Not rounding here keeps the result independent of torch's thread count
            # (values at .5 would round either way with the last float bit).
            x = F.interpolate(x, size=new, mode="bilinear", align_corners=False)
        out[i, :, top:top + new[0], left:left + new[1]] = (x[0] / 255).to(dtype)
        placements.append(Placement(size, new, (left, top)))
    return Letterboxed(out, tuple(placements))
