"""Background kept: how much an anonymization changed the image away from the people.

Only pixels no person's dilated mask reaches are scored, so replacing a person costs nothing here
and anything an anonymization does to the rest of the scene (seams, colour shifts, a re-encoded
image) shows. Scores are kept as sums, so a data set pools them per pixel rather than averaging
per-image PSNRs (which an untouched image would make infinite).

SSIM is computed against the output with everything inside the region's complement put back to
the original: its 7x7 window would otherwise reach across the region's edge into the replaced
person, and an untouched background would score below 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from skimage.metrics import structural_similarity

from refsd_trt.failsafe import dilated


@dataclass(frozen=True)
class BackgroundScore:
    squared_error: float  # sum over outside pixels and channels of (original - output)^2, 8-bit units
    values: int  # (pixel, channel) values the sum covers
    ssim_sum: float  # SSIM map (averaged over channels) summed over outside pixels
    pixels: int  # outside pixels


def outside(masks: np.ndarray, dilate_px: int, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: True where no person's mask, grown by ``dilate_px``, reaches."""
    masks = np.asarray(masks, dtype=bool).reshape(-1, *shape)
    if len(masks) == 0:
        return np.ones(shape, dtype=bool)
    # Dilating the union is the union of the dilations, at one dilation's cost.
    return ~dilated(np.any(masks, axis=0), dilate_px)


def background_score(original: np.ndarray, output: np.ndarray, region: np.ndarray) -> BackgroundScore:
    """Error and SSIM of ``output`` against ``original`` (HxWx3 uint8) over the (H, W) ``region``."""
    if original.shape != output.shape:
        raise ValueError(f"output shape {output.shape} differs from the original's {original.shape}")
    region = np.asarray(region, dtype=bool)
    diff = original[region].astype(np.float64) - output[region].astype(np.float64)
    background_only = np.where(region[..., None], output, original)
    _, ssim_map = structural_similarity(original, background_only, data_range=255, channel_axis=2, full=True)
    return BackgroundScore(squared_error=float(np.sum(diff * diff)), values=int(diff.size),
                           ssim_sum=float(ssim_map.mean(axis=2)[region].sum()), pixels=int(region.sum()))


def pooled_psnr(scores: Sequence[BackgroundScore]) -> float:
    """PSNR (dB) of all outside values pooled: inf when nothing changed, nan when nothing was scored."""
    values = sum(s.values for s in scores)
    if values == 0:
        return math.nan
    error = sum(s.squared_error for s in scores)
    if error == 0:
        return math.inf
    return 10 * math.log10(255.0 ** 2 / (error / values))


def mean_ssim(scores: Sequence[BackgroundScore]) -> float:
    """Mean SSIM over all outside pixels pooled; nan when nothing was scored."""
    pixels = sum(s.pixels for s in scores)
    return sum(s.ssim_sum for s in scores) / pixels if pixels else math.nan
