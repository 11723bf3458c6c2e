"""Background kept: known answers for PSNR, SSIM and the region they are measured on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refsd_trt.eval.background import BackgroundScore, background_score, mean_ssim, outside, pooled_psnr

H, W = 64, 80


def image(seed: int = 0, high: int = 200) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, (H, W, 3), dtype=np.uint8)


def square_mask() -> np.ndarray:
    masks = np.zeros((1, H, W), dtype=bool)
    masks[0, 20:40, 30:50] = True
    return masks


def test_outside_honours_dilation():
    masks = square_mask()
    # (row 30, column 53) is 3 px right of the mask's last column (49): column 50, 51, 52 between.
    assert not outside(masks, 5, (H, W))[30, 53]
    assert outside(masks, 1, (H, W))[30, 53]
    assert not outside(masks, 0, (H, W))[30, 49] and outside(masks, 0, (H, W))[30, 50]
    assert outside(masks, 0, (H, W)).sum() == H * W - 400


def test_outside_is_everything_without_people_and_the_union_with_several():
    assert outside(np.zeros((0, H, W), dtype=bool), 5, (H, W)).all()
    masks = np.zeros((2, H, W), dtype=bool)
    masks[0, 0:10, 0:10] = True
    masks[1, 50:60, 60:70] = True
    region = outside(masks, 2, (H, W))
    assert not region[5, 5] and not region[55, 65] and region[30, 40]


def test_untouched_background_is_infinite_psnr_and_unit_ssim_whatever_the_person_became():
    original, masks = image(), square_mask()
    output = original.copy()
    output[masks[0]] = 255 - output[masks[0]]  # person completely changed
    for dilate in (0, 5):  # the changed pixels reach right up to the region, or stop 5 px short of it
        region = outside(masks, dilate, (H, W))
        score = background_score(original, output, region)
        assert score.squared_error == 0 and score.values == 3 * region.sum() and score.pixels == region.sum()
        assert pooled_psnr([score]) == math.inf
        # SSIM's window never reads the person's new pixels: an untouched background is exactly 1.
        assert mean_ssim([score]) == pytest.approx(1.0, abs=1e-9)
    # A seam along the region's edge is background damage, and SSIM sees it.
    seam = output.copy()
    seam[outside(masks, 0, (H, W)) & ~region] = 0
    assert mean_ssim([background_score(original, seam, outside(masks, 0, (H, W)))]) < 0.999


@pytest.mark.parametrize("d", [1, 4, 17])
def test_uniform_error_gives_the_textbook_psnr(d):
    original, masks = image(1), square_mask()
    output = original + np.uint8(d)  # values < 200, no wrap-around
    output[masks[0]] = 0  # whatever happens inside does not count
    score = background_score(original, output, outside(masks, 3, (H, W)))
    assert pooled_psnr([score]) == pytest.approx(20 * math.log10(255 / d), rel=1e-12)


def test_psnr_pools_errors_over_values_not_images():
    a = BackgroundScore(squared_error=0.0, values=300, ssim_sum=100.0, pixels=100)
    b = BackgroundScore(squared_error=4.0 * 100, values=100, ssim_sum=20.0, pixels=40)
    # Mean squared error over 400 values is 1: PSNR is 20 log10(255).
    assert pooled_psnr([a, b]) == pytest.approx(20 * math.log10(255))
    assert mean_ssim([a, b]) == pytest.approx(120 / 140)
    assert math.isnan(pooled_psnr([])) and math.isnan(mean_ssim([]))
    empty = BackgroundScore(0.0, 0, 0.0, 0)
    assert math.isnan(pooled_psnr([empty])) and math.isnan(mean_ssim([empty]))


def test_ssim_drops_for_noise_and_with_its_strength():
    original = image(2, high=256)
    rng = np.random.default_rng(3)
    region = outside(np.zeros((0, H, W), dtype=bool), 0, (H, W))

    def noisy(sigma: float) -> float:
        output = np.clip(original + rng.normal(0, sigma, original.shape), 0, 255).astype(np.uint8)
        return mean_ssim([background_score(original, output, region)])

    assert mean_ssim([background_score(original, original.copy(), region)]) == pytest.approx(1.0, abs=1e-9)
    light, heavy = noisy(5), noisy(40)
    assert 0 < heavy < light < 1


def test_background_score_counts_and_rejects_mismatched_shapes():
    original = image(4)
    region = np.zeros((H, W), dtype=bool)
    region[:10] = True
    output = original.copy()
    output[0, 0, 0] += 3
    score = background_score(original, output, region)
    assert (score.squared_error, score.values, score.pixels) == (9.0, 10 * W * 3, 10 * W)
    with pytest.raises(ValueError, match="shape"):
        background_score(original, output[:-1], region)
