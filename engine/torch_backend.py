"""Eager torch: the reference backend and the fallback where no compiled engine exists."""

from __future__ import annotations

import copy
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
        if precision == "bfloat16" and self.device.type != "cpu":
            raise ValueError(f"{spec.name}: bfloat16 engines are for CPUs (GPUs run float16), got {self.device}")
        # bf16 computes in bf16 with float32 at the boundary (modelspec.FLOAT_IO)
        self._compute = torch.bfloat16 if precision == "bfloat16" else None
        if precision == "float32" and any(p.dtype == torch.float16 for p in module.parameters()):
            self.module = compute_in_fp32(module.to(self.device))  # fp16 weights kept as stored (loaders)
        elif precision == "bfloat16":
            self.module = cast_copy(module, torch.bfloat16)
        else:
            self.module = module.to(self.device, dtype=torch.float16 if precision == "float16" else torch.float32)
        # oneDNN's bf16 (AMX) convolutions run on NHWC without reordering every layer's activations:
        # the SD 1.5 inpainting UNet at 512², batch 2, took 6.5-8.0 s per step against 8.1-11.2 s in NCHW.
        self._channels_last = self._compute is not None and any(
            isinstance(m, nn.Conv2d) for m in self.module.modules())
        if self._channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.module.eval().requires_grad_(False)

    def _to_compute(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            return x
        x = x.to(self._compute)
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last and x.dim() == 4 else x

    @torch.inference_mode()
    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor] | None = None,
            stream: torch.cuda.Stream | None = None) -> dict[str, torch.Tensor]:
        args = [feeds[name] for name in self.spec.input_names if name in feeds]
        if self._compute is not None:
            args = [self._to_compute(x) for x in args]
        if stream is not None:
            with torch.cuda.stream(stream):
                results = self.module(*args)
        else:
            results = self.module(*args)
        if self._compute is not None:
            results = [y.float().contiguous() if y.is_floating_point() else y for y in results]
        named = dict(zip(self.spec.output_names, results))
        for name, target in (outputs or {}).items():
            target.copy_(named[name])
            named[name] = target
        return named


def cast_copy(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of ``module`` with its float weights in ``dtype``, leaving ``module`` as it is: the loaders
    share one loaded model between engines (an fp32 engine may hold it). Only the cast weights are
    new memory; the copy never holds a second full-precision set."""
    memo = {id(t): t.detach().to(dtype) if t.is_floating_point() else t
            for t in (*module.parameters(), *module.buffers())}
    memo |= {id(p): nn.Parameter(memo[id(p)], requires_grad=False) for p in module.parameters()}
    return copy.deepcopy(module, memo)


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
