"""Eager torch: the reference backend and the fallback where no compiled engine exists."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from refsd_trt.engine.base import Engine
from refsd_trt.modelspec import ModelSpec


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, spec: ModelSpec, module: nn.Module, device: str | torch.device = "cpu",
                 precision: str = "float32"):
        self.spec, self.device, self.precision = spec, torch.device(device), precision
        self.module = module.to(self.device, dtype=torch.float16 if precision == "float16" else torch.float32)
        self.module.eval().requires_grad_(False)

    @torch.inference_mode()
    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor] | None = None,
            stream: torch.cuda.Stream | None = None) -> dict[str, torch.Tensor]:
        args = [feeds[name] for name in self.spec.input_names if name in feeds]
        if stream is not None:
            with torch.cuda.stream(stream):
                results = self.module(*args)
        else:
            results = self.module(*args)
        named = dict(zip(self.spec.output_names, results))
        for name, target in (outputs or {}).items():
            target.copy_(named[name])
            named[name] = target
        return named
