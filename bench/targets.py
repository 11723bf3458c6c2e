"""Issue 7's performance targets, checked on the run's own measurements (never in unit tests: timing
on a shared machine is no test). They are stated for the tiny preset on CPU with 8 images × 4
people; other runs report them too, against their own workload."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

MIN_SPEEDUP = 3.0  # end to end, refsd-trt vs the baseline, measured in the same run
MAX_OVERHEAD = 0.10  # orchestration time as a fraction of engine time
SCALING_SLACK = 0.05  # a point may be this much slower than the previous one (timing noise)


@dataclass(frozen=True)
class Target:
    name: str
    method: str
    description: str
    threshold: float
    measured: float | None
    passed: bool | None  # None: not measured in this run

    def to_dict(self) -> dict:
        return asdict(self)


def _check(name: str, method: str, description: str, threshold: float, measured: float | None,
           higher_is_better: bool) -> Target:
    passed = None if measured is None else (measured >= threshold if higher_is_better else measured <= threshold)
    return Target(name, method, description, threshold, measured, passed)


def speedup_target(method: str, speedup: float | None) -> Target:
    return _check("end_to_end_speedup", method, f"baseline time / refsd-trt time >= {MIN_SPEEDUP:g}",
                  MIN_SPEEDUP, speedup, higher_is_better=True)


def overhead_target(method: str, fraction: float | None) -> Target:
    return _check("orchestration_overhead", method,
                  f"anonymize: (wall - engine time - avatar compute) / engine time <= {MAX_OVERHEAD:g}",
                  MAX_OVERHEAD, fraction, higher_is_better=False)


def scaling_target(method: str, points: list[dict], crop_batch_size: int) -> Target:
    """Time per person falls as people per batch grow, up to the batch size (person crops per UNet
    call): no point up to ``crop_batch_size`` people is more than ``SCALING_SLACK`` slower per
    person than the one before, and the last is faster than the first. Measured: last / first time
    per person."""
    inside = [p["seconds_per_person"] for p in points if p["people_per_image"] <= crop_batch_size]
    description = (f"seconds per person non-increasing (slack {SCALING_SLACK:g}) from 1 to {crop_batch_size} "
                   "people per batch, and lower at the end")
    if len(inside) < 2:
        return Target("time_per_person_falls", method, description, 1.0, None, None)
    steady = all(b <= a * (1 + SCALING_SLACK) for a, b in itertools.pairwise(inside))
    measured = inside[-1] / inside[0]
    return Target("time_per_person_falls", method, description, 1.0, measured, steady and measured < 1.0)
