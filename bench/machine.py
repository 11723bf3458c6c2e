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
    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average": load_average(),  # a shared machine: other work slows every number
    }


def load_average() -> list[float]:
    return list(os.getloadavg())


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


@dataclass(frozen=True)
class MemoryPeak:
    host_rss_bytes: int  # the whole process's peak: both sides' models are resident while either runs
    device_bytes: int | None  # torch's peak CUDA allocation (the whole process); None on CPU
    device_working_bytes: int | None  # that peak above what was allocated at the start: the side's working memory

    def max(self, other: MemoryPeak) -> MemoryPeak:
        pick = lambda a, b: None if a is None else max(a, b)
        return MemoryPeak(max(self.host_rss_bytes, other.host_rss_bytes), pick(self.device_bytes, other.device_bytes),
                          pick(self.device_working_bytes, other.device_working_bytes))

    def to_dict(self) -> dict:
        mib = lambda b: None if b is None else b / 2**20
        return {"host_rss_peak_mib": mib(self.host_rss_bytes), "device_peak_mib": mib(self.device_bytes),
                "device_working_mib": mib(self.device_working_bytes)}


class PeakMemory:
    """Peak resident memory of this process while the block runs, sampled every ``interval`` s
    (getrusage's peak covers the whole process lifetime, so it cannot tell two sides apart), and
    torch's peak CUDA allocation over the block."""

    def __init__(self, device: torch.device, interval: float = 0.01):
        self.device, self.interval = device, interval
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._peak = 0
        self._device_start = 0
        self.result: MemoryPeak | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._device_start = torch.cuda.memory_allocated(self.device)
        self._peak = self._process.memory_info().rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        device = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        working = None if device is None else device - self._device_start
        self.result = MemoryPeak(self._peak, device, working)
