"""What the numbers were measured on, and how much memory each side needed."""

from __future__ import annotations

import os
import platform
import threading
from dataclasses import dataclass

import psutil
import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict:
    info = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average": list(os.getloadavg()),  # a shared machine: other work slows every number
    }
    return info


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


@dataclass
class MemoryPeak:
    host_rss_bytes: int  # the whole process: everything loaded before the block counts too
    host_rss_before_bytes: int  # what the caller marked as the start (e.g. before loading a side's models)
    device_bytes: int | None  # torch's peak allocation on the GPU; None on CPU

    def to_dict(self) -> dict:
        return {"host_rss_peak_mib": self.host_rss_bytes / 2**20,
                "host_rss_growth_mib": (self.host_rss_bytes - self.host_rss_before_bytes) / 2**20,
                "device_peak_mib": None if self.device_bytes is None else self.device_bytes / 2**20}


class PeakMemory:
    """Peak resident memory of this process while the block runs, sampled every ``interval`` s
    (getrusage's peak covers the whole process lifetime, so it cannot tell two sides apart), and
    torch's peak CUDA allocation over the block. ``before``: the resident size to report growth
    from (default: at entry)."""

    def __init__(self, device: torch.device, before: int | None = None, interval: float = 0.01):
        self.device, self.interval = device, interval
        self._process = psutil.Process()
        self.before = before
        self._stop = threading.Event()
        self._peak = 0
        self.result: MemoryPeak | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._peak = self._process.memory_info().rss
        self.before = self._peak if self.before is None else self.before
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        device = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        self.result = MemoryPeak(self._peak, self.before, device)
