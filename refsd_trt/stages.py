"""What every anonymization method shares: its call contract and per-stage timing.

A method (lite, inpaint, refsd) takes a batch of images on its device with their detected
people and per-person prompts, and returns one float image per input. The caller — the
``Anonymizer`` — owns everything around it: detection, prompts, the fail-closed checks, encoding.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import torch

from refsd_trt.attributes import PersonPrompt
from refsd_trt.engine.base import Engine
from refsd_trt.types import PersonDetections

STAGES = ("detect", "remove", "fit", "render", "refine", "inpaint", "merge")


T = TypeVar("T")


class StageTimeout(RuntimeError):
    """A stage ran longer than the configured limit; its result is not trusted."""


class StageHung(RuntimeError):
    """A stage abandoned past its limit is still running: the engines it holds cannot take more work."""


class StageTimer:
    """Accumulates wall time per stage name. With ``sync`` the device is synchronised at each
    stage boundary so asynchronous GPU work is charged to the stage that queued it (benchmarks
    want that; production runs leave it off to keep the stream full)."""

    def __init__(self, device: torch.device | str = "cpu", sync: bool = False, limit_s: float | None = None):
        self.device, self.sync, self.limit_s = torch.device(device), sync, limit_s
        self.seconds: dict[str, float] = {}
        self._running: tuple[str, float] | None = None  # the stage in progress and when it began

    def _barrier(self) -> None:
        if self.sync and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._barrier()
        start = time.perf_counter()
        self._running = (stage, start)
        try:
            yield
        finally:
            self._barrier()
            self._running = None
            elapsed = time.perf_counter() - start
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
        if self.limit_s is not None and elapsed > self.limit_s:
            raise StageTimeout(f"stage {stage} took {elapsed:.1f} s, over the {self.limit_s:g} s limit")


    def overdue(self) -> str | None:
        """Why the stage in progress has run past the limit, or None while it has not."""
        running = self._running
        if self.limit_s is None or running is None:
            return None
        elapsed = time.perf_counter() - running[1]
        return f"stage {running[0]} passed its {self.limit_s:g} s limit" if elapsed > self.limit_s else None


_ABANDONED: list[threading.Thread] = []  # every watchdog's, for the process's exit


def abandoned_workers() -> list[threading.Thread]:
    """Stage threads abandoned past their limit that still run. A process exiting normally while
    one runs native code can abort in the runtime's teardown, so the CLI leaves with ``os._exit``."""
    return [worker for worker in _ABANDONED if worker.is_alive()]


class Watchdog:
    """Runs stages so that one past its limit cannot block the caller.

    Without a limit the work runs inline. With one, it runs on a worker thread while the caller
    watches ``timer.overdue()``: a stage past its limit raises ``StageTimeout`` at once (the caller
    fails the batch closed) and the worker is abandoned, since Python cannot stop a thread. While an
    abandoned worker still runs, it may hold the engines, so the next call raises ``StageHung``; once
    it has finished, work goes on as normal."""

    POLL_S = 0.05

    def __init__(self) -> None:
        self._abandoned: tuple[threading.Thread, str, float] | None = None

    def run(self, work: Callable[[], T], timer: StageTimer) -> T:
        if self._abandoned is not None:
            worker, why, since = self._abandoned
            if worker.is_alive():
                raise StageHung(f"{why} and is still running {time.perf_counter() - since:.0f} s later")
            self._abandoned = None
        if timer.limit_s is None:
            return work()
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = work()
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=target, name="refsd-trt-stages", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(self.POLL_S)
            late = timer.overdue()
            if late is not None and worker.is_alive():
                self._abandoned = (worker, late, time.perf_counter())
                _ABANDONED[:] = [*abandoned_workers(), worker]  # finished ones are dropped, not kept forever
                raise StageTimeout(late)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]


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
