"""The timed loop shared by both sides: decode → detect → anonymize → encode, warm-up runs first,
then repeated runs, each one timed per stage and end to end."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from refsd_trt.bench.instrument import EngineCall, EngineRecorder
from refsd_trt.bench.machine import MemoryPeak, PeakMemory
from refsd_trt.bench.scenes import Scene
from refsd_trt.bench.sides import Side


@dataclass
class Workload:
    """Scenes and the PNG files that hold them (decoding those files is the first timed stage)."""

    name: str
    scenes: list[Scene]
    paths: list[Path]

    @classmethod
    def write(cls, name: str, scenes: list[Scene], folder: Path) -> Workload:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for scene in scenes:
            path = folder / f"{scene.key}.png"
            Image.fromarray(scene.image).save(path)
            paths.append(path)
        return cls(name, scenes, paths)

    @property
    def images(self) -> int:
        return len(self.scenes)

    @property
    def people(self) -> int:
        return sum(s.count for s in self.scenes)

    def describe(self) -> dict:
        sizes = sorted({tuple(s.image.shape[:2]) for s in self.scenes})
        return {"name": self.name, "images": self.images, "people": self.people,
                "people_per_image": [s.count for s in self.scenes], "sizes_hw": [list(s) for s in sizes],
                "synthetic": all(s.synthetic for s in self.scenes)}


@dataclass
class Repeat:
    stages: dict[str, float]  # canonical stage -> seconds over the workload
    wall: float  # end to end: first decode to last encode
    cpu: float  # CPU seconds this process used meanwhile (all threads): steadier than wall time under others' load
    pipeline: float  # detect + anonymize: what engine time is compared with
    calls: list[EngineCall] = field(default_factory=list)
    detect_calls: int = 0  # the first ``detect_calls`` calls ran during detection, the rest in anonymize


@dataclass
class SideRun:
    side: str
    repeats: list[Repeat]
    people: list[int]  # people each output accounts for (the last repeat's)
    detected: list[int]  # people the side's own detector found per image
    memory: MemoryPeak


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def round_keys(scenes: list[Scene], round_index: int) -> list[str]:
    """Image keys for one pass. They seed the per-person prompts, so a fresh key per pass gives
    fresh prompts: no pass is served from a cache the previous one filled (a real stream of
    images never repeats), while both sides still see the same prompts and seeds pass by pass."""
    return [f"{s.key}/round{round_index}" for s in scenes]


def run_once(side: Side, workload: Workload, out: Path, oracle: bool, round_index: int,
             device: torch.device | None = None) -> tuple[Repeat, list[int], list[int]]:
    """One timed pass. ``oracle``: anonymize the scenes' known people (the detector still runs and
    is timed, its counts kept for the parity check); otherwise the side's own detections."""
    clock = time.perf_counter
    stages: dict[str, float] = {}
    with EngineRecorder(side.engines) as recorder:
        start, cpu_start = clock(), time.process_time()
        images = side.decode(workload.paths)
        stages["decode"] = clock() - start

        began = clock()
        detected = side.detect(images)
        _sync(device)
        stages["detect"] = clock() - began
        detect_calls = len(recorder.calls)

        people = [s.people for s in workload.scenes] if oracle else detected
        result = side.anonymize(images, people, round_keys(workload.scenes, round_index))
        _sync(device)
        pipeline = clock() - began
        stages.update(result.stages)

        began = clock()
        side.encode(result.images, out)
        stages["encode"] = clock() - began
        wall, cpu = clock() - start, time.process_time() - cpu_start
    repeat = Repeat(stages, wall, cpu, pipeline, recorder.calls, detect_calls)
    return repeat, result.people, [len(d) for d in detected]


def run_sides(sides: Sequence[Side], workload: Workload, warmup: int, repeats: int, out: Path, oracle: bool,
              device: torch.device | None = None) -> dict[str, SideRun]:
    """``warmup`` untimed rounds (engine allocation, caches, lazy imports), then ``repeats`` timed
    ones. Within a round the sides take turns, so on a shared machine a burst of someone else's
    load hits both rather than one: the ratios stay fair even when the absolute times drift.
    Each side's outputs overwrite its previous round's in ``out/<side>``."""
    for side in sides:
        (out / side.name).mkdir(parents=True, exist_ok=True)
    for i in range(warmup):
        for side in sides:
            run_once(side, workload, out / side.name, oracle, i, device)
    timed: dict[str, list[Repeat]] = {side.name: [] for side in sides}
    last: dict[str, tuple[list[int], list[int]]] = {}
    memory: dict[str, MemoryPeak] = {}
    for i in range(warmup, warmup + repeats):
        for side in sides:
            with PeakMemory(device or torch.device("cpu")) as meter:
                repeat, people, detected = run_once(side, workload, out / side.name, oracle, i, device)
            timed[side.name].append(repeat)
            last[side.name] = (people, detected)
            memory[side.name] = memory[side.name].max(meter.result) if side.name in memory else meter.result
    return {side.name: SideRun(side.name, timed[side.name], *last[side.name], memory[side.name]) for side in sides}
