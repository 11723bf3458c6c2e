"""uint8 <-> float conversions for images: [-1, 1] (diffusion models) and [0, 1] (detectors, masks).

Both directions are affine maps ``float = u8 * scale + offset``; the inverse rounds half to even and
clamps to 0..255, so ``to_uint8(to_float(x)) == x`` exactly for all 256 values. NaN maps to 0.
Any shape works (typically (B, C, H, W)); outputs are new tensors on the input's device.
"""

from __future__ import annotations

import torch

from .dispatch import fusable

SIGNED = (2.0 / 255.0, -1.0)  # (scale, offset) of the [-1, 1] convention
UNIT = (1.0 / 255.0, 0.0)  # (scale, offset) of the [0, 1] convention


def u8_to_float(images: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
    """uint8 tensor of any shape -> float32 ``images * scale + offset``."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.to(torch.float32).mul_(scale).add_(offset)


def float_to_u8(x: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
    """Inverse of :func:`u8_to_float`: float tensor -> uint8, rounded half to even and clamped."""
    q = (x.to(torch.float32) - offset).mul_(1.0 / scale).round_()
    return q.nan_to_num_(nan=0.0).clamp_(0, 255).to(torch.uint8)


@fusable
def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) in 0..255 -> float32 in [-1, 1]."""
    return u8_to_float(images_u8, *SIGNED)


@fusable
def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] (any shape) -> uint8 0..255, rounded and clamped."""
    return float_to_u8(x, *SIGNED)


@fusable
def u8_to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 in 0..255 -> float32 in [0, 1]."""
    return u8_to_float(images_u8, *UNIT)


@fusable
def unit_to_u8(x: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] -> uint8 0..255, rounded and clamped."""
    return float_to_u8(x, *UNIT)
