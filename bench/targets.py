"""Performance targets, checked on a run's own measurements (never in unit tests: timing on a shared
machine is no test).

The tiny-zoo bench (``make bench``) is an overhead check: orchestration against engine time and
time per person as people per batch grow. Its end-to-end ratio to the plain baseline is still
reported against issue 7's 3×, which tiny random models cannot measure (both sides do the same fp32
FLOPs). The speed that counts is measured at the real models' shapes (``make bench-real``,
issue 17): ``real_shape_targets``.
"""

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


# Issue 17, at real shapes on CPU (bench/real.py's closing figures).
MIN_REAL_SPEEDUP = 3.0  # one UNet step and one VAE decode, refsd-trt over diffusers fp32
MIN_LITE_IMAGES_PER_S = 2.0  # lite, warm, on the sample photos


def real_shape_targets(figures: dict[str, float]) -> list[Target]:
    return [
        _check("unet_step_speedup", "diffusion", f"diffusers fp32 / refsd-trt, lower of the two UNets >= "
               f"{MIN_REAL_SPEEDUP:g}", MIN_REAL_SPEEDUP, figures["unet_step_speedup"], higher_is_better=True),
        _check("vae_decode_speedup", "diffusion", f"diffusers fp32 / refsd-trt, lower of the two VAE decodes >= "
               f"{MIN_REAL_SPEEDUP:g}", MIN_REAL_SPEEDUP, figures["vae_decode_speedup"], higher_is_better=True),
        _check("lite_images_per_s", "lite", f"warm images/s >= {MIN_LITE_IMAGES_PER_S:g}", MIN_LITE_IMAGES_PER_S,
               figures["lite_images_per_s"], higher_is_better=True),
    ]
