"""What this CPU offers for reduced-precision inference: the flags that make bf16 fast.

bf16 only pays where the CPU multiplies bf16 in hardware: AMX tiles (``amx_bf16``) or AVX-512 BF16
dot products (``avx512_bf16``). Elsewhere oneDNN emulates it and bf16 runs slower than fp32, so the
default precision rule (``refsd_trt.methods.precision_for``) asks here first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
REPORTED_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f")


@dataclass(frozen=True)
class CpuFeatures:
    flags: frozenset[str]  # /proc/cpuinfo's, of the first processor
    torch_capability: str  # torch.backends.cpu.get_cpu_capability(): the kernels torch dispatches to

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags

    @property
    def fast_bf16(self) -> bool:
        return any(flag in self.flags for flag in BF16_FLAGS)

    def summary(self) -> str:
        present = [f for f in REPORTED_FLAGS if f in self.flags]
        verdict = ("bf16 in hardware (AMX)" if self.amx else "bf16 in hardware (AVX-512 BF16)" if self.fast_bf16
                   else "no bf16 hardware: CPU engines stay float32")
        return f"{verdict}; flags: {', '.join(present) or 'none of ' + ', '.join(REPORTED_FLAGS)}; " \
               f"torch kernels: {self.torch_capability}"


def read_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()  # not Linux: no flags known, nothing assumed
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@cache
def cpu_features() -> CpuFeatures:
    return CpuFeatures(read_flags(), torch.backends.cpu.get_cpu_capability())
