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
        if precision == "float32" and any(p.dtype == torch.float16 for p in module.parameters()):
            self.module = compute_in_fp32(module.to(self.device))  # fp16 weights kept as stored (loaders)
        else:
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


def compute_in_fp32(module: nn.Module) -> nn.Module:
    """``module`` with its fp16 weights kept in fp16 and each submodule computing with fp32 copies of
    its own for the length of its call: the values an fp32 load of the same file gives (the cast is
    exact), in half the memory, plus one layer's fp32 copy at a time."""
    if getattr(module, "_computes_in_fp32", False):
        return module  # shared with an engine that already hooked it
    for sub in module.modules():
        names = [n for n, p in sub.named_parameters(recurse=False) if p.dtype == torch.float16]
        if names:
            sub.register_forward_pre_hook(lambda m, args, names=tuple(names): _upcast(m, names))
            sub.register_forward_hook(lambda m, args, out: _restore(m))
    module._computes_in_fp32 = True
    return module


def _upcast(module: nn.Module, names: tuple[str, ...]) -> None:
    module._fp16_weights = {n: module._parameters[n] for n in names}
    for n in names:
        module._parameters[n] = module._fp16_weights[n].float()


def _restore(module: nn.Module) -> None:
    module._parameters.update(module.__dict__.pop("_fp16_weights"))
