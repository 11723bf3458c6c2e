"""A FLOP model measured from shapes: each distinct (engine, input shapes) the pipeline ran is run
once more under ``torch.utils.flop_counter.FlopCounterMode`` on the engine's torch module, and the
count is multiplied by how often that call happened. The counter covers convolutions, matrix
products and fused attention (the work that matters); normalisations and element-wise ops are left
out, so achieved FLOP/s is a slight underestimate of what the hardware did.

Compiled engines (onnxruntime, TensorRT) have no torch module: the one they were exported from is
loaded from the checkpoint their artifact manifest names.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from refsd_trt.bench.instrument import EngineCall
from refsd_trt.engine.base import Engine
from refsd_trt.export import artifacts, sources

# Dense fp16/bf16 tensor-core peak (no sparsity), TFLOP/s, by a substring of the CUDA device name;
# the first match wins, so more specific names come first.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
)


def peak_flops(device_name: str | None) -> float | None:
    """FLOP/s at the device's fp16 peak, or None for CPUs and GPUs not in the table."""
    for key, tflops in PEAK_TFLOPS:
        if device_name and key in device_name:
            return tflops * 1e12
    return None


def device_peak(device: torch.device) -> tuple[float | None, str]:
    """The peak a run's FLOP/s is measured against, and where it comes from: a GPU's datasheet fp16
    tensor-core peak; on a CPU, measured fp32 matrix products, since no table knows a CPU's vector
    units, clocks and the cores the process may use."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = peak_flops(name)
        return peak, f"datasheet dense fp16 peak of {name}" if peak else f"{name} is not in the peak table"
    return measured_matmul_flops(), f"measured: fp32 {MATMUL_SIZE}² matrix products on {torch.get_num_threads()} threads"


MATMUL_SIZE = 2048


def measured_matmul_flops(repeats: int = 5, dtype: torch.dtype = torch.float32, size: int = MATMUL_SIZE) -> float:
    """Median FLOP/s of CPU matrix products large enough to run at the BLAS's best (bf16: oneDNN's
    AMX kernels where the CPU has them)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up: thread pool start, page faults
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def count_flops(module: nn.Module, args: Iterable[torch.Tensor]) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(*args)
    return int(counter.get_total_flops())


def torch_module(engine: Engine) -> nn.Module:
    """The torch module that computes what ``engine`` computes."""
    while (inner := getattr(engine, "inner", None)) is not None:  # micro-batched, releasable (CPU refsd)
        engine = inner  # computes what its inner engine does
    module = getattr(engine, "module", None)
    if module is not None:
        return module
    path = getattr(engine, "path", None)
    manifest_file = path.parent / artifacts.MANIFEST if path is not None else None
    if manifest_file is None or not manifest_file.is_file():
        raise LookupError(f"{engine.spec.name} ({engine.backend}): neither a torch module nor an artifact manifest")
    manifest = json.loads(manifest_file.read_text())
    loaded = sources.load(manifest["source"]["ref"], manifest["component"])
    return loaded.model.to(engine.device, torch.float16 if engine.precision == "float16" else torch.float32)


def _args(call: EngineCall, engine: Engine, module: nn.Module) -> list[torch.Tensor]:
    """Positional inputs in the spec's order, as the torch wrapper takes them. Values do not change
    the count: zeros are valid ids, timesteps and pixels alike. A bf16 torch engine's module takes
    bf16 (its engine casts the float32 feeds at the boundary)."""
    bf16 = any(p.dtype == torch.bfloat16 for p in module.parameters())
    as_called = lambda dtype: torch.bfloat16 if bf16 and dtype.is_floating_point else dtype
    feeds = {name: torch.zeros(shape, dtype=as_called(getattr(torch, dtype)), device=engine.device)
             for name, shape, dtype in call.shapes}
    return [feeds[name] for name in engine.spec.input_names if name in feeds]


@dataclass
class FlopModel:
    """FLOPs per engine call, counted once per distinct shape and cached."""

    engines: Mapping[str, Engine]
    _per_call: dict[tuple, int] = field(default_factory=dict)
    _modules: dict[str, nn.Module] = field(default_factory=dict)

    def call_flops(self, call: EngineCall) -> int:
        key = (call.engine, call.shapes)
        if key not in self._per_call:
            engine = self.engines[call.engine]
            if call.engine not in self._modules:
                self._modules[call.engine] = torch_module(engine)
            module = self._modules[call.engine]
            self._per_call[key] = count_flops(module, _args(call, engine, module))
        return self._per_call[key]

    def flops_by_engine(self, calls: Iterable[EngineCall]) -> dict[str, int]:
        totals: Counter = Counter()
        for call in calls:
            totals[call.engine] += self.call_flops(call)
        return dict(totals)


@dataclass(frozen=True)
class Throughput:
    flops: int
    seconds: float
    peak: float | None  # FLOP/s of the device, if known

    @property
    def achieved(self) -> float | None:
        return self.flops / self.seconds if self.seconds > 0 else None

    @property
    def fraction_of_peak(self) -> float | None:
        return self.achieved / self.peak if self.peak and self.achieved is not None else None

    def to_dict(self) -> dict:
        return {"gflop": self.flops / 1e9, "seconds": self.seconds, "achieved_gflops": _scaled(self.achieved),
                "fraction_of_peak": self.fraction_of_peak}


def _scaled(value: float | None) -> float | None:
    return None if value is None else value / 1e9
