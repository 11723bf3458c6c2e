"""A video streams through the runner: at most one batch of anonymized frames is alive at a time,
whatever the video's length, and its manifest line still counts every frame, person and fallback."""

from __future__ import annotations

import json
import weakref
from types import SimpleNamespace

import numpy as np
import torch

from refsd_trt.api import AnonymizedImage
from refsd_trt.io import VideoWriter, iter_video_frames
from refsd_trt.runner import Runner
from refsd_trt.types import PersonDetections, PersonRecord


class CountingAnonymizer:
    """Inverts each frame and reports one person (every third frame filled by the fail-safe);
    counts how many of the output images it made are still alive."""

    def __init__(self):
        self.config = SimpleNamespace(to_dict=lambda: {"preset": "fake"}, keep_metadata=(), track_gap_frames=0)
        self.engines = {}
        self.alive = self.peak = self.frames = 0

    def _freed(self):
        self.alive -= 1

    def detect(self, images):
        """One person in every frame (the video path tracks people before anonymizing them)."""
        h, w = images[0].shape[-2:]
        return [PersonDetections(torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.tensor([0.9]),
                                 torch.zeros((1, h, w), dtype=torch.bool)) for _ in images], 0.0

    def __call__(self, images, image_keys=None, detections=None, person_keys=None):
        out = []
        for image in images:
            pixels = 255 - image.permute(1, 2, 0).numpy()
            weakref.finalize(pixels, self._freed)
            self.alive += 1
            self.peak = max(self.peak, self.alive)
            fallback = f"filled: injected fault {self.frames % 2}" if self.frames % 3 == 0 else None
            person = PersonRecord(box=(0.0, 0.0, 8.0, 8.0), score=0.9, coverage=0.1, fallback=fallback)
            out.append(AnonymizedImage(pixels, [person], {"detect": 0.001}, "fake", "fake", True))
            self.frames += 1
        return out


def _video(path, count, width=64, height=48):
    with VideoWriter(path, 10.0, (width, height)) as writer:
        for i in range(count):
            frame = torch.zeros((3, height, width), dtype=torch.uint8)
            frame[0] = 10 * i
            writer.write(frame)


def test_video_memory_is_bounded_by_one_batch(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _video(folder / "clip.mp4", 13)
    fake = CountingAnonymizer()
    out = tmp_path / "out"
    summary = Runner(lambda: fake, out, batch_size=2, progress=False).run([str(folder)])
    assert summary.ok == 1 and summary.failed == 0
    assert fake.frames == 13
    assert fake.peak <= 2, f"{fake.peak} anonymized frames alive at once (batch size 2)"
    with iter_video_frames(out / "clip.mp4") as frames:
        assert sum(1 for _ in frames) == 13
    (record,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert record["input"] == "clip.mp4" and record["output"] == "clip.mp4" and record["people"] is None
    assert record["frames"] == 13 and record["people_count"] == 13 and record["fallback_count"] == 5
    assert record["fallbacks"] == ["filled: injected fault 0", "filled: injected fault 1"]  # each reason once
    assert summary.people == 13 and summary.fallbacks == 5 and np.isclose(record["timings"]["detect"], 0.007)
