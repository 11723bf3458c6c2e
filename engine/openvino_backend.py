"""OpenVINO on CPU: the fp32 ONNX artifact compiled with bf16 inference precision (AMX, AVX-512 BF16).

OpenVINO is optional (``pip install 'refsd-trt[openvino]'``); ``auto`` times it against torch's bf16
engine where it is installed. It takes and returns float32 (modelspec.FLOAT_IO) and converts at the
boundary of the compiled model, like the torch bf16 engine.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

import torch

from refsd_trt.engine.base import Engine
from refsd_trt.modelspec import ModelSpec

# The inference precision OpenVINO computes in, by engine precision.
HINTS = {"bfloat16": "bf16", "float32": "f32"}


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


class OpenVinoEngine(Engine):
    backend = "openvino"

    def __init__(self, spec: ModelSpec, onnx_path: str | Path, device: str | torch.device = "cpu",
                 precision: str = "bfloat16", threads: int | None = None):
        import openvino as ov

        self.spec, self.device, self.path, self.precision = spec, torch.device(device), Path(onnx_path), precision
        if self.device.type != "cpu":
            raise ValueError(f"{spec.name}: the OpenVINO backend runs on CPUs, not {self.device}")
        if precision not in HINTS:
            raise ValueError(f"{spec.name}: OpenVINO runs {' or '.join(HINTS)}, not {precision}")
        core = ov.Core()
        model = core.read_model(str(self.path))
        names = {p.get_any_name() for p in model.inputs}, {p.get_any_name() for p in model.outputs}
        if names[0] != set(spec.input_names) or not set(spec.output_names) <= names[1]:
            raise ValueError(f"{self.path} does not match spec {spec.name}: file has inputs {sorted(names[0])} and "
                             f"outputs {sorted(names[1])}, spec wants {spec.input_names} -> {spec.output_names}")
        config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._outputs = {name: self._compiled.output(name) for name in spec.output_names}

    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor] | None = None,
            stream: torch.cuda.Stream | None = None) -> dict[str, torch.Tensor]:
        # share_inputs: OpenVINO reads the torch tensors' memory in place for the length of the call
        self._request.infer({name: feeds[name].contiguous().numpy() for name in self.spec.input_names},
                            share_inputs=True)
        # the request's output buffers are reused by its next call: copy them out
        named = {name: torch.from_numpy(self._request.get_tensor(port).data.copy())
                 for name, port in self._outputs.items()}
        for name, target in (outputs or {}).items():
            target.copy_(named[name])
            named[name] = target
        return named

    def close(self) -> None:
        self._request = self._compiled = None
