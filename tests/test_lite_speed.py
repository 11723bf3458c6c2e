"""lite removes people on a second thread beside the avatar render: the same pixels as one after the
other, and a failing removal still fails the batch."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np
import pytest
import torch

from refsd_trt.attributes import PersonPrompt
from refsd_trt.pipelines import lite
from refsd_trt.pipelines.avatars import StandInAvatar
from refsd_trt.pipelines.lite import LiteMethod, LiteSettings
from refsd_trt.types import PersonDetections


class InlineExecutor:
    """``ThreadPoolExecutor``'s surface, running each task at once on the caller's thread."""

    def __init__(self, **_):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False

    def submit(self, fn, *args) -> Future:
        done = Future()
        done.set_result(fn(*args))
        return done


def _batch() -> tuple[list[torch.Tensor], list[PersonDetections], list[list[PersonPrompt]]]:
    """Two textured images with two people each."""
    rng = np.random.default_rng(0)
    images, detections = [], []
    for height, width in ((120, 200), (150, 160)):
        images.append(torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8)))
        masks = torch.zeros((2, height, width), dtype=torch.bool)
        masks[0, 20:100, 30:60] = True
        masks[1, 30:110, 100:130] = True
        boxes = torch.tensor([[30.0, 20.0, 60.0, 100.0], [100.0, 30.0, 130.0, 110.0]])
        detections.append(PersonDetections(boxes, torch.tensor([0.9, 0.8]), masks, None, "segmentation"))
    prompts = [[PersonPrompt({}, "", seed) for seed in (1, 2)] for _ in images]
    return images, detections, prompts


def _method() -> LiteMethod:
    return LiteMethod(StandInAvatar(), "cpu", LiteSettings(dilate_px=4, crop_scale=1.2))


def test_the_removal_runs_beside_the_render_and_gives_the_serial_pixels(monkeypatch):
    images, detections, prompts = _batch()
    threads = []
    real_fill = lite.fill_scene

    def recording_fill(*args):
        threads.append(threading.current_thread().name)
        return real_fill(*args)

    monkeypatch.setattr(lite, "fill_scene", recording_fill)
    parallel = _method()(images, detections, prompts)
    assert len(threads) == 2 and all(name.startswith("lite-remove") for name in threads)

    monkeypatch.setattr(lite, "ThreadPoolExecutor", InlineExecutor)
    serial = _method()(images, detections, prompts)
    assert threads[2:] == [threading.current_thread().name] * 2
    for a, b in zip(parallel, serial, strict=True):
        assert torch.equal(a, b)


def test_a_failing_removal_fails_the_batch(monkeypatch):
    images, detections, prompts = _batch()

    def broken(*_):
        raise RuntimeError("fill exploded")

    monkeypatch.setattr(lite, "fill_scene", broken)
    with pytest.raises(RuntimeError, match="fill exploded"):
        _method()(images, detections, prompts)
