"""Per-person crops the way the published code takes them: a square of 1.1 × the box's longer side,
centred on the box, moved (not padded) to stay inside the image, resized to the UNet's resolution,
and pasted back under the person's mask."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def square_crop(box: Sequence[float], height: int, width: int, scale: float = 1.1) -> tuple[int, int, int, int]:
    """xyxy integer square around ``box``; sides longer than the image's shorter side are clamped."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(round(min(max(x1 - x0, y1 - y0) * scale, height, width)), 1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = round(min(max(cx - side / 2, 0), width - side))
    top = round(min(max(cy - side / 2, 0), height - side))
    return left, top, left + side, top + side


def cut(image: np.ndarray, crop: tuple[int, int, int, int], size: int) -> Image.Image:
    x0, y0, x1, y1 = crop
    return Image.fromarray(image[y0:y1, x0:x1]).resize((size, size), Image.BICUBIC)


def cut_mask(mask: np.ndarray, crop: tuple[int, int, int, int], size: int) -> Image.Image:
    x0, y0, x1, y1 = crop
    return Image.fromarray(mask[y0:y1, x0:x1].astype(np.uint8) * 255).resize((size, size), Image.NEAREST)


def paste(image: np.ndarray, result: Image.Image, crop: tuple[int, int, int, int], mask: np.ndarray) -> None:
    """Write ``result`` (the crop, at any size) into ``image`` in place where ``mask`` (full image) is set."""
    x0, y0, x1, y1 = crop
    back = np.asarray(result.convert("RGB").resize((x1 - x0, y1 - y0), Image.BICUBIC))
    region, where = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    region[where] = back[where]
