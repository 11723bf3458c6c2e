"""How refsd-trt's time grows: per person as people per image and crops per UNet call grow, and
against image size. Only the anonymize step is timed (decode, detection and encode do not depend on the
people), median of ``repeats`` runs after one warm-up. The baseline is left out: it processes one
person at a time, so its time per person is flat by construction.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from refsd_trt.bench.harness import round_keys
from refsd_trt.bench.scenes import Scene, synthetic_scenes
from refsd_trt.bench.sides import Side


@dataclass(frozen=True)
class SweepSettings:
    people: tuple[int, ...] = (1, 2, 4, 8, 16)  # per image, one image per call
    crop_batch_sizes: tuple[int, ...] = (1, 2, 4, 8)  # person crops per UNet call
    batch_images: int = 1  # images (of ``batch_people`` each) the crop-batch sweep runs
    batch_people: int = 8
    sizes: tuple[int, ...] = (256, 512, 1024)  # square images of ``size_people`` people
    size_people: int = 4
    repeats: int = 5  # medians of 5: at 2, shared-machine noise (±7 %) outweighed the 5 % slack of the target


def time_anonymize(side: Side, scenes: Sequence[Scene], repeats: int) -> float:
    images, people = [s.image for s in scenes], [s.people for s in scenes]
    side.anonymize(images, people, round_keys(scenes, 0))  # warm-up: new shapes allocate and compile here
    times = []
    for i in range(1, repeats + 1):
        start = time.perf_counter()
        side.anonymize(images, people, round_keys(scenes, i))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _point(key: str, value: int, seconds: float, scenes: Sequence[Scene]) -> dict:
    people = sum(s.count for s in scenes)
    return {key: value, "images": len(scenes), "people": people, "seconds": seconds,
            "seconds_per_person": seconds / people, "seconds_per_image": seconds / len(scenes)}


def people_sweep(side: Side, settings: SweepSettings, size: tuple[int, int], seed: int) -> list[dict]:
    points = []
    for n in settings.people:
        scenes = synthetic_scenes(1, n, size, seed)
        points.append(_point("people_per_image", n, time_anonymize(side, scenes, settings.repeats), scenes))
    return points


def crop_batch_sweep(make_side: Callable[[int], Side], settings: SweepSettings, size: tuple[int, int],
                     seed: int) -> list[dict]:
    """``make_side(n)`` builds a side whose diffusion stages run ``n`` person crops per UNet call."""
    scenes = synthetic_scenes(settings.batch_images, settings.batch_people, size, seed)
    points = []
    for b in settings.crop_batch_sizes:
        points.append(_point("crop_batch_size", b, time_anonymize(make_side(b), scenes, settings.repeats), scenes))
    return points


def size_sweep(side: Side, settings: SweepSettings, seed: int) -> list[dict]:
    points = []
    for edge in settings.sizes:
        scenes = synthetic_scenes(1, settings.size_people, (edge, edge), seed)
        points.append(_point("size", edge, time_anonymize(side, scenes, settings.repeats), scenes))
    return points
