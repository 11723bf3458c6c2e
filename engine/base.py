"""The one interface every backend implements: named input tensors in, named output tensors out.

Set-up (loading, allocation, shape inference) happens in a backend's constructor or ``prepare``;
``run`` only binds tensors and enqueues work, so it is cheap to call in a loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import torch

from refsd_trt.modelspec import ModelSpec


class Engine(ABC):
    spec: ModelSpec
    device: torch.device
    precision: str  # "float32", "float16" or "bfloat16" (CPU: bf16 compute, float32 inputs and outputs)
    backend: str  # short name, e.g. "torch", "onnxruntime-cpu", "tensorrt"
    # True where every new shape costs (a captured CUDA graph per shape): callers then pad their
    # last batch to a size they already ran instead of running a smaller one.
    fixed_shapes: bool = False

    @abstractmethod
    def run(
        self,
        feeds: Mapping[str, torch.Tensor],
        outputs: Mapping[str, torch.Tensor] | None = None,
        stream: torch.cuda.Stream | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run once. ``feeds`` must be on ``self.device`` with the spec's dtypes; tensors passed in
        ``outputs`` are written in place (and returned) instead of being allocated. Other returned
        tensors may be buffers the engine owns and overwrites on its next run at that shape:
        clone what must outlive it. On CUDA the work is enqueued on ``stream`` (default: the
        engine's stream) and ``run`` does not wait for it."""

    def __call__(self, **feeds: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.run(feeds)

    def close(self) -> None:
        """Release device resources; the default backend holds none beyond Python references."""

    def check_feeds(self, feeds: Mapping[str, torch.Tensor]) -> None:
        """Validate names, dtypes and devices (off the hot path: callers use it in tests and set-up)."""
        missing = set(self.spec.input_names) - set(feeds)
        extra = set(feeds) - set(self.spec.input_names)
        if missing or extra:
            raise ValueError(f"{self.spec.name}: missing inputs {sorted(missing)}, unexpected {sorted(extra)}")
        for t in self.spec.inputs:
            x = feeds[t.name]
            want = t.torch_dtype(self.precision)
            if x.dtype != want:
                raise TypeError(f"{self.spec.name}: input {t.name} is {x.dtype}, expected {want}")
            if x.device.type != self.device.type:
                raise ValueError(f"{self.spec.name}: input {t.name} is on {x.device}, engine on {self.device}")
