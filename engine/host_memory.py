"""How much host memory this process holds, and how much a run may hold: what ``auto`` weighs beside speed.

On a CPU the fastest backend is not always one that fits: onnxruntime runs the full-size SDXL UNet
faster than torch on a CPU without bf16, but holds its fp32 weights (10.3 GB) where torch keeps the
checkpoint's fp16 (5.1 GB); with the rest of refsd resident that is 21 GB instead of 12 GB.
"""

from __future__ import annotations

import os
from pathlib import Path

# The share of the machine's memory a run's engines may fill by default: the rest is for activations
# (a 1024² SDXL step on a CPU: several GB), the page cache the weights load from, and the system.
DEFAULT_FRACTION = 0.6
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def rss_bytes() -> int:
    """This process's resident set now (Linux: /proc/self/statm; elsewhere psutil)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import psutil

        return psutil.Process().memory_info().rss


def machine_bytes() -> int:
    """The memory this process can have: the machine's, or its container's limit where lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit in _CGROUP_LIMITS:
        try:
            value = limit.read_text().strip()
        except OSError:
            continue
        if value.isdigit():  # "max": no limit
            total = min(total, int(value))
    return total


def budget_bytes(gigabytes: float | None) -> int:
    """A run's memory budget: ``gigabytes`` (10⁹ bytes) when given, else ``DEFAULT_FRACTION`` of the machine."""
    return int(gigabytes * 1e9) if gigabytes is not None else int(machine_bytes() * DEFAULT_FRACTION)

