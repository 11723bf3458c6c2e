"""A stage past its limit never blocks (issue 13): the call returns at the limit with the batch filled,
and while the abandoned stage still runs the anonymizer refuses work instead of sharing its engines."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
import torch

from refsd_trt import failsafe
from refsd_trt.api import Anonymizer, DetectionFailed
from refsd_trt.stages import StageHung, StageTimer, Watchdog, abandoned_workers
from refsd_trt.types import PersonDetections

LIMIT_S = 0.5


def _person(height=160, width=120) -> tuple[np.ndarray, PersonDetections]:
    image = np.full((height, width, 3), 50, np.uint8)
    image[30:150, 40:80] = 230
    mask = torch.zeros((1, height, width), dtype=torch.bool)
    mask[0, 30:150, 40:80] = True
    return image, PersonDetections(torch.tensor([[40.0, 30.0, 80.0, 150.0]]), torch.tensor([0.9]), mask)


@pytest.fixture
def lite(monkeypatch) -> Anonymizer:
    anonymizer = Anonymizer.from_preset("lite", verify_identity="off")
    anonymizer.config = dataclasses.replace(anonymizer.config, stage_timeout_s=LIMIT_S)
    return anonymizer


def _hang_until(event: threading.Event, real):
    def hung(*args, **kwargs):
        event.wait(30)
        return real(*args, **kwargs)

    return hung


def _wait_for_abandoned(seconds: float = 30.0) -> None:
    deadline = time.perf_counter() + seconds
    while abandoned_workers() and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert not abandoned_workers()


def test_a_hung_stage_is_abandoned_at_its_limit_and_its_batch_filled(lite, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(lite.method, "avatars", _hang_until(release, lite.method.avatars))
    image, given = _person()
    start = time.perf_counter()
    result = lite([image], detections=[given])[0]
    waited = time.perf_counter() - start
    try:
        assert waited < LIMIT_S + 2.0  # not the 30 s the stage would hang for
        assert result.people[0].fallback == f"filled (StageTimeout: stage render passed its {LIMIT_S:g} s limit)"
        assert failsafe.unchanged_fraction(image, result.image, given.masks[0].numpy()) < 0.05
        # The abandoned stage still holds the engines: the next batch is refused, not run beside it.
        with pytest.raises(StageHung, match="stage render passed its 0.5 s limit and is still running"):
            lite([image], detections=[given])
    finally:
        release.set()
    _wait_for_abandoned()
    # Once it has finished, work goes on as normal.
    monkeypatch.undo()
    again = lite([image], detections=[given])[0]
    assert again.people[0].fallback is None


def test_a_hung_detector_is_a_failed_detection_at_its_limit(lite, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(lite.detector, "detect", _hang_until(release, lite.detector.detect))
    start = time.perf_counter()
    try:
        with pytest.raises(DetectionFailed, match="stage detect passed its 0.5 s limit"):
            lite([_person()[0]])
        assert time.perf_counter() - start < LIMIT_S + 2.0
    finally:
        release.set()
    _wait_for_abandoned()


def test_the_watchdog_runs_inline_without_a_limit_and_passes_errors_through():
    watchdog = Watchdog()
    caller = threading.get_ident()
    assert watchdog.run(threading.get_ident, StageTimer()) == caller
    timer = StageTimer(limit_s=5.0)
    assert watchdog.run(threading.get_ident, timer) != caller
    with pytest.raises(ZeroDivisionError):
        watchdog.run(lambda: 1 / 0, timer)
