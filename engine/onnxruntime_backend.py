"""onnxruntime behind the ``Engine`` interface, bound to torch tensors through IOBinding.

Inputs are bound by device pointer (``tensor.data_ptr()``) and outputs are written straight into
torch tensors, either the caller's or ones allocated at set-up; nothing is converted through
numpy. One class covers the CPU, CUDA and TensorRT execution providers: they differ only in the
provider list and in where the bound memory lives.

On CUDA the session runs on a stream of the engine's own, given to onnxruntime as
``user_compute_stream``. It must be a real stream: torch's default stream has handle 0, which
onnxruntime reads as "no user stream" (it then runs on a private stream, and with
``disable_synchronize_execution_providers`` nothing orders its writes before torch's reads).
The session's provider options are read back to check onnxruntime took the stream, and the
provider list to check the session did not silently fall back to the CPU. ``run`` orders the
engine's stream after the caller's and the caller's after the engine's, as ``TrtEngine`` does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch

from refsd_trt.engine.base import Engine
from refsd_trt.engine.dtypes import NUMPY, ORT, float_precision
from refsd_trt.modelspec import ModelSpec

log = logging.getLogger(__name__)

# Short backend names by the execution provider that does the work.
PROVIDER_NAMES = {
    "CPUExecutionProvider": "onnxruntime-cpu",
    "CUDAExecutionProvider": "onnxruntime-cuda",
    "TensorrtExecutionProvider": "onnxruntime-tensorrt",
}


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def stream_options(device: torch.device, stream_handle: int) -> dict[str, Any]:
    """The CUDA and TensorRT providers' device and stream options. ``stream_handle`` is a
    ``torch.cuda.Stream``'s ``cuda_stream``; 0 (torch's default stream) is refused, since
    onnxruntime would read it as no stream at all."""
    if not stream_handle:
        raise ValueError("onnxruntime needs a non-default CUDA stream: handle 0 (torch's default stream) "
                         "means 'no user stream' to it, and its work would not be ordered with torch's")
    return {"device_id": device.index or 0, "user_compute_stream": str(int(stream_handle))}


def tensorrt_provider_options(cache: Path | None = None) -> dict[str, Any]:
    """onnxruntime's TensorRT provider: engines and tactic timings cached on disk (it rebuilds
    every engine on every session otherwise), precision from the ONNX file (an fp16 export
    runs fp16, an fp32 one fp32)."""
    from refsd_trt.paths import cache_dir

    folder = str(cache or cache_dir() / "onnxruntime-tensorrt")
    return {"trt_fp16_enable": False, "trt_engine_cache_enable": True, "trt_engine_cache_path": folder,
            "trt_timing_cache_enable": True, "trt_timing_cache_path": folder}


def default_providers(device: torch.device, accelerator: str = "cuda", stream: torch.cuda.Stream | None = None):
    """Provider list for a device. On CUDA the session runs on ``stream`` (a non-default torch
    stream, required), so its work is ordered by the engine's stream events."""
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise ValueError(f"onnxruntime engines run on cpu or cuda devices, not {device}")
    if stream is None:
        raise ValueError("onnxruntime on CUDA needs the stream it will run on")
    options = stream_options(device, stream.cuda_stream)
    chosen = {
        "cuda": [("CUDAExecutionProvider", options)],
        "tensorrt": [("TensorrtExecutionProvider", {**options, **tensorrt_provider_options()}),
                     ("CUDAExecutionProvider", options)],
    }
    if accelerator not in chosen:
        raise ValueError(f"accelerator must be one of {sorted(chosen)}, got {accelerator!r}")
    return [*chosen[accelerator], "CPUExecutionProvider"]


def check_session(device: torch.device, active: Sequence[str], provider_options: Mapping[str, Mapping[str, str]],
                  available: Sequence[str] = ()) -> None:
    """Refuse a CUDA session that onnxruntime quietly put on the CPU (the CUDA provider failed to
    load: onnxruntime only logs it) or that runs on a stream of its own instead of the engine's
    (``has_user_compute_stream`` not set in the options it reports)."""
    if device.type != "cuda":
        return
    gpu = [p for p in active if p in GPU_PROVIDERS]
    if not gpu:
        hint = ("the onnxruntime installed has no CUDA provider: uninstall onnxruntime, install onnxruntime-gpu "
                "(one CUDA major with torch's)" if "CUDAExecutionProvider" not in available else
                "the CUDA provider failed to load (CUDA/cuDNN libraries; see onnxruntime's log)")
        raise RuntimeError(f"onnxruntime fell back to {', '.join(active) or 'nothing'} for a CUDA engine: {hint}")
    for provider in gpu:
        if str(provider_options.get(provider, {}).get("has_user_compute_stream", "0")) not in ("1", "true", "True"):
            raise RuntimeError(f"onnxruntime's {provider} did not take the engine's CUDA stream "
                               "(has_user_compute_stream is off): its outputs would race torch's reads")


class OrtEngine(Engine):
    """``OrtEngine(spec, "model.onnx", device="cpu")``.

    ``precision`` defaults to what the ONNX file's float inputs are (fp16 exports say float16).
    Static ONNX files (every input dimension fixed) get their output buffers at construction; for
    dynamic ones call ``prepare(**axes)`` per shape to allocate ahead, otherwise the first ``run``
    at a new shape allocates. Returned tensors that the caller did not pass in ``outputs`` are the
    engine's buffers and are overwritten by the next ``run`` at the same shape.
    """

    def __init__(self, spec: ModelSpec, onnx_path: str | Path, device: str | torch.device = "cpu",
                 providers: Sequence | None = None, precision: str | None = None, threads: int | None = None,
                 stream: torch.cuda.Stream | None = None, session_options: ort.SessionOptions | None = None):
        self.spec, self.device, self.path = spec, torch.device(device), Path(onnx_path)
        if self.device.type == "cuda":
            if self.device.index is None:
                self.device = torch.device("cuda", torch.cuda.current_device())
            stream = stream or torch.cuda.Stream(self.device)  # the engine's own, never handle 0
        self.stream = stream
        if session_options is None:
            session_options = ort.SessionOptions()
            # Idle workers sleep instead of spinning: between runs the pipeline's own torch ops need
            # those cores (on 2 CPU cores spinning made a batch 13-25 % slower and cost 30-50 % more CPU).
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # On a CPU the memory arena keeps each session's activation peak for good (+2.3 GB after a
            # 1024² decode of the real-layout zoo's SDXL VAE, +0.06 GB without; 5-10 % slower runs):
            # a pipeline's dozen sessions would hold them all at once.
            session_options.enable_cpu_mem_arena = self.device.type != "cpu"
        options = session_options
        if threads:
            options.intra_op_num_threads = threads
        providers = list(providers or default_providers(self.device, stream=stream))
        self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        check_session(self.device, self.session.get_providers(), self.session.get_provider_options(),
                      ort.get_available_providers())
        first = self.session.get_providers()[0]
        self.backend = PROVIDER_NAMES.get(first, f"onnxruntime-{first}")
        self._dtypes = self._check_names_and_types()
        file_precision = float_precision(self._dtypes.values())
        if precision not in (None, file_precision):
            raise ValueError(f"{spec.name}: {self.path} holds a {file_precision} model, asked for {precision}")
        self.precision = file_precision
        self._device_type, self._device_id = self.device.type, self.device.index or 0
        self._run_options = ort.RunOptions()
        if self.device.type == "cuda":
            # run() only enqueues: completion is ordered on self.stream, not waited for on the host.
            self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self._buffers: dict[tuple, dict[str, torch.Tensor]] = {}
        self._binding = self.session.io_binding()
        self._bound: tuple = ()  # (pointer, dtype, shape) of each bound tensor, in binding order
        static = self._static_input_shapes()
        if static is not None:
            self.prepare_shapes(static)

    def _check_names_and_types(self) -> dict[str, torch.dtype]:
        declared = {a.name: a for a in (*self.session.get_inputs(), *self.session.get_outputs())}
        names = {a.name for a in self.session.get_inputs()}, {a.name for a in self.session.get_outputs()}
        want = set(self.spec.input_names), set(self.spec.output_names)
        if names[0] != want[0] or not want[1] <= names[1]:
            raise ValueError(
                f"{self.path} does not match spec {self.spec.name}: file has inputs {sorted(names[0])} and "
                f"outputs {sorted(names[1])}, spec wants inputs {sorted(want[0])} and outputs {sorted(want[1])}"
            )
        unknown = {n: a.type for n, a in declared.items() if a.type not in ORT}
        if unknown:
            raise TypeError(f"{self.path}: unsupported tensor types {unknown}")
        return {n: ORT[declared[n].type] for n in (*self.spec.input_names, *self.spec.output_names)}

    def _static_input_shapes(self) -> dict[str, tuple[int, ...]] | None:
        shapes = {a.name: tuple(a.shape) for a in self.session.get_inputs()}
        if all(isinstance(d, int) for s in shapes.values() for d in s):
            return shapes
        return None

    def prepare(self, **axes: int) -> None:
        """Allocate output buffers for one set of axis values (e.g. ``batch=2, height=1024, width=1024``)."""
        self.prepare_shapes(self.spec.shapes(**axes))

    def prepare_shapes(self, input_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
        key = tuple(tuple(input_shapes[n]) for n in self.spec.input_names)
        if key not in self._buffers:
            axes = self.spec.axis_values(**self.spec.axes_of(input_shapes))
            with self._on_engine_stream():
                self._buffers[key] = {
                    name: torch.empty(shape, dtype=self._dtypes[name], device=self.device)
                    for name, shape in self.spec.output_shapes(**axes).items()
                }
        return self._buffers[key]

    def _on_engine_stream(self):
        """Allocations and copies go on the engine's stream (CUDA), so they order with its work."""
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    def input_dtype(self, name: str) -> torch.dtype:
        return self._dtypes[name]

    def _bind(self, name: str, tensor: torch.Tensor, output: bool) -> None:
        bind = self._binding.bind_output if output else self._binding.bind_input
        bind(name, self._device_type, self._device_id, NUMPY[tensor.dtype], tuple(tensor.shape), tensor.data_ptr())

    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor] | None = None,
            stream: torch.cuda.Stream | None = None) -> dict[str, torch.Tensor]:
        caller = None
        if self.stream is not None:
            caller = stream or torch.cuda.current_stream(self.device)
            self.stream.wait_stream(caller)  # inputs written on the caller's stream come first
        with self._on_engine_stream():
            # .contiguous() is a no-op for the usual contiguous feed; a strided view gets one compact copy.
            inputs = [feeds[name].contiguous() for name in self.spec.input_names]
            key = tuple(tuple(x.shape) for x in inputs)
            buffers = self._buffers.get(key) or self.prepare_shapes(dict(zip(self.spec.input_names, key)))
            results = {**buffers, **(outputs or {})}
            bound = [*inputs, *(results[n] for n in self.spec.output_names)]
            # Fast path for loops over the same tensors (static shapes): the binding still holds.
            signature = tuple((x.data_ptr(), x.dtype, x.shape) for x in bound)
            if signature != self._bound:
                for i, (name, x) in enumerate(zip(self.spec.input_names + self.spec.output_names, bound)):
                    self._bind(name, x, output=i >= len(inputs))
                self._bound = signature
            self.session.run_with_iobinding(self._binding, self._run_options)
        if caller is not None:
            caller.wait_stream(self.stream)  # what the caller enqueues next sees the outputs
        return {name: results[name] for name in self.spec.output_names}

    def close(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()  # nothing in flight may still use the buffers freed here
        self._buffers.clear()
        self._binding = self.session = None
