"""The scene fill's Poisson blend solves OpenCV's seamlessClone equations itself (scipy's DST), much
faster: it must give OpenCV's blend."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from refsd_trt.pipelines.scene_fill import seamless_clone


def _textured(seed: int, sigma: float, shape=(300, 400)) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), sigma)


def _mask(shape=(300, 400)) -> np.ndarray:
    """An ellipse with a thin arm: erosion and the bounding box both matter."""
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.ellipse(mask, (200, 150), (120, 80), 0, 0, 360, 255, -1)
    mask[140:145, 60:90] = 255
    return mask


def _centre(mask: np.ndarray) -> tuple[int, int]:
    """Where the mask's bounding box sits: the centre that blends the guide in place."""
    x, y, w, h = cv2.boundingRect(mask)
    return x + w // 2, y + h // 2


def _opencv_blend(guide, target, mask, centre, folder) -> np.ndarray:
    """OpenCV's blend from a fresh process. OpenCV 5.1 keeps state between seamlessClone calls: in
    one process the first call gives one blend and later calls alternate between two others (31 and
    5 levels from the first on this test's images), so only a first call is reproducible."""
    np.savez(folder / "inputs.npz", guide=guide, target=target, mask=mask, centre=np.array(centre))
    code = ("import sys, cv2, numpy as np; d = np.load(sys.argv[1]); "
            "np.save(sys.argv[2], cv2.seamlessClone(d['guide'], d['target'], d['mask'], "
            "tuple(int(v) for v in d['centre']), cv2.NORMAL_CLONE))")
    subprocess.run([sys.executable, "-c", code, str(folder / "inputs.npz"), str(folder / "blend.npy")], check=True)
    return np.load(folder / "blend.npy")


@pytest.mark.parametrize("moved", [(0, 0), (-6, 4)])
def test_the_blend_is_opencvs_to_one_level(moved, tmp_path):
    guide, target, mask = _textured(0, 3), _textured(1, 5), _mask()
    centre = (_centre(mask)[0] + moved[0], _centre(mask)[1] + moved[1])
    ours = seamless_clone(guide, target, mask, centre).astype(int)
    difference = np.abs(ours - _opencv_blend(guide, target, mask, centre, tmp_path).astype(int))
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.01  # off by one where the truncation to uint8 falls either way
    _, _, w, h = cv2.boundingRect(mask)
    left, top = centre[0] - w // 2, centre[1] - h // 2
    inside = np.zeros(mask.shape, dtype=bool)
    inside[top + 1:top + h - 1, left + 1:left + w - 1] = True
    assert np.array_equal(ours[~inside], target[~inside])  # only the box's interior is solved for


def test_the_targets_own_gradients_give_the_target_back():
    target, mask = _textured(2, 4), _mask()
    out = seamless_clone(target, target, mask, _centre(mask))
    assert np.abs(out.astype(int) - target).max() <= 1


def test_a_box_leaving_the_target_is_refused():
    guide, target, mask = _textured(0, 3), _textured(1, 5), _mask()
    with pytest.raises(ValueError):
        seamless_clone(guide, target, mask, (30, 150))
