"""What every anonymization method shares: its call contract and per-stage timing.

A method (lite, inpaint, refsd) takes a batch of images on its device with their detected
people and per-person prompts, and returns one float image per input. The caller — the
``Anonymizer`` — owns everything around it: detection, prompts, the fail-closed checks, encoding.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch

from refsd_trt.attributes import PersonPrompt
from refsd_trt.engine.base import Engine
from refsd_trt.types import PersonDetections

STAGES = ("detect", "remove", "fit", "render", "refine", "inpaint", "merge")


class StageTimeout(RuntimeError):
    """A stage ran longer than the configured limit; its result is not trusted."""


class StageTimer:
    """Accumulates wall time per stage name. With ``sync`` the device is synchronised at each
    stage boundary so asynchronous GPU work is charged to the stage that queued it (benchmarks
    want that; production runs leave it off to keep the stream full)."""

    def __init__(self, device: torch.device | str = "cpu", sync: bool = False, limit_s: float | None = None):
        self.device, self.sync, self.limit_s = torch.device(device), sync, limit_s
        self.seconds: dict[str, float] = {}

    def _barrier(self) -> None:
        if self.sync and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._barrier()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._barrier()
            elapsed = time.perf_counter() - start
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
        if self.limit_s is not None and elapsed > self.limit_s:
            raise StageTimeout(f"stage {stage} took {elapsed:.1f} s, over the {self.limit_s:g} s limit")


class Method(Protocol):
    name: str
    device: torch.device
    engines: dict[str, Engine]  # what the method runs, for instrumentation and the manifest
    working_size: int  # the square crop resolution people are processed at
    settings: Any  # the method's settings dataclass; ``crop_scale`` sizes each person's square crop

    def __call__(self, images: Sequence[torch.Tensor], detections: Sequence[PersonDetections],
                 prompts: Sequence[Sequence[PersonPrompt]], timer: StageTimer) -> list[torch.Tensor]:
        """``images``: (3, H, W) uint8 on ``device``; returns (3, H, W) float images in [0, 1],
        one per input, still on the device. People whose pixels come back non-finite are treated
        as failed by the caller."""
