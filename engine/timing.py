"""Time engines on this machine, so ``auto`` picks backends by measurement, not by assumption.

On two CPU cores torch wins the tiny inpainting UNet (fused attention) while onnxruntime wins the
VAE by about 2x (ENVIRONMENT.md); on GPUs the order differs again. The median of a few runs after
warm-up is robust to the noise of a shared machine.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Mapping

import torch

from refsd_trt.engine.base import Engine


def device_key(device: torch.device) -> str:
    """Timings only transfer between identical machines: name the processor and thread count."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}:{torch.get_num_threads()}threads"


def shape_key(axes: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(axes.items()))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# A call this long is timed once after its warm-up: at real sizes on a CPU (an SDXL UNet step with
# guidance takes 10-30 s) three timed runs per backend and batch would add minutes to a first run, and
# one such run averages over far more than the scheduler noise that the median is there to reject.
LONG_CALL_S = 2.0
# A call this long is its own measurement: what a first call costs once (oneDNN primitive creation,
# buffer planning) does not grow with the call, so past 30 s it is a small part of it, while a second
# full-size SDXL UNet step on a CPU is minutes more of a first ``auto`` run (exports and timings were
# 50 of the 60 min of a first full-size refsd run on a 2-core CPU; the SDXL UNet step at 1024², 270 s).
VERY_LONG_CALL_S = 30.0


def median_ms(engine: Engine, feeds: Mapping[str, torch.Tensor], warmup: int = 1, repeats: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(warmup):
        engine.run(feeds)
    _sync(engine.device)
    first_s = (time.perf_counter() - start) / warmup if warmup else 0.0
    if first_s > VERY_LONG_CALL_S:
        return first_s * 1e3
    if first_s > LONG_CALL_S:
        repeats = 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.run(feeds)
        _sync(engine.device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
