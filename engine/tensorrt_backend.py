"""Native TensorRT behind the ``Engine`` interface (GPU machines only; ``tensorrt`` imported lazily).

Engines are deserialized once; execution contexts get their activation memory from a
``ScratchMemory`` shared by every engine that runs on the same stream (UNet, VAE and text
encoders run one after another, so one buffer sized for the largest serves all of them). Tensors
are bound by address (``set_tensor_address``) and work is enqueued with ``execute_async_v3``.
For a prepared static shape, the enqueue can be captured once in a CUDA graph and replayed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from refsd_trt.engine.base import Engine
from refsd_trt.engine.dtypes import float_precision
from refsd_trt.export.specs import ModelSpec

log = logging.getLogger(__name__)


def _tensorrt():
    from refsd_trt.export.tensorrt_build import import_tensorrt

    return import_tensorrt()


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int64: torch.int64, trt.bool: torch.bool, trt.uint8: torch.uint8, trt.bfloat16: torch.bfloat16}
    return table[dtype]


class ScratchMemory:
    """One growable device buffer for the activations of engines that never run concurrently.

    Growing replaces the buffer; ``generation`` changes with it so each engine re-binds (and
    re-captures its CUDA graphs) before its next run instead of using the freed pointer."""

    def __init__(self, device: torch.device):
        self.device, self.buffer, self.generation = device, None, 0

    def reserve(self, nbytes: int) -> None:
        if self.buffer is None or self.buffer.numel() < nbytes:
            self.buffer = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=self.device)
            self.generation += 1

    @property
    def pointer(self) -> int:
        return self.buffer.data_ptr()


class TrtEngine(Engine):
    """``TrtEngine(spec, "model.plan", device="cuda", scratch=shared, cuda_graph=True)``."""

    backend = "tensorrt"

    def __init__(self, spec: ModelSpec, plan_path: str | Path, device: str | torch.device = "cuda",
                 scratch: ScratchMemory | None = None, stream: torch.cuda.Stream | None = None,
                 cuda_graph: bool = False):
        trt = _tensorrt()
        self.spec, self.device, self.path = spec, torch.device(device), Path(plan_path)
        if self.device.type != "cuda":
            raise ValueError(f"TensorRT engines run on a CUDA device, not {self.device}")
        self.stream = stream or torch.cuda.current_stream(self.device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{self.path}: TensorRT could not deserialize this plan (other TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        self.scratch = scratch or ScratchMemory(self.device)
        self._scratch_bytes = getattr(self.engine, "device_memory_size_v2", None) or self.engine.device_memory_size
        self.scratch.reserve(self._scratch_bytes)
        self._scratch_generation = -1
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        missing = set(spec.input_names + spec.output_names) - set(names)
        if missing:
            raise ValueError(f"{self.path} does not match spec {spec.name}: it lacks tensors {sorted(missing)}")
        self.precision = float_precision(self._dtypes[n] for n in spec.input_names)
        self.cuda_graph = self.fixed_shapes = cuda_graph
        self._buffers: dict[tuple, dict[str, torch.Tensor]] = {}
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor]]] = {}
        self._shape_key: tuple | None = None

    def prepare(self, **axes: int) -> None:
        self.prepare_shapes(self.spec.shapes(**axes))

    def prepare_shapes(self, input_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
        """Set input shapes, let TensorRT infer output shapes, allocate the outputs (set-up only)."""
        key = tuple(tuple(input_shapes[n]) for n in self.spec.input_names)
        if key not in self._buffers:
            self._set_shapes(key)
            self._buffers[key] = {
                n: torch.empty(tuple(self.context.get_tensor_shape(n)), dtype=self._dtypes[n], device=self.device)
                for n in self.spec.output_names
            }
        return self._buffers[key]

    def _set_shapes(self, key: tuple) -> None:
        if key != self._shape_key:
            for name, shape in zip(self.spec.input_names, key):
                if not self.context.set_input_shape(name, shape):
                    raise ValueError(f"{self.spec.name}: shape {shape} of {name} is outside the engine's profile")
            self._shape_key = key

    def _bind_scratch(self) -> None:
        if self._scratch_generation != self.scratch.generation:
            if hasattr(self.context, "set_device_memory"):  # TensorRT >= 10.1
                self.context.set_device_memory(self.scratch.pointer, self._scratch_bytes)
            else:
                self.context.device_memory = self.scratch.pointer
            self._scratch_generation = self.scratch.generation
            self._graphs.clear()  # captured graphs hold the old scratch pointer

    def _enqueue(self, tensors: Mapping[str, torch.Tensor], stream: torch.cuda.Stream) -> None:
        for name, tensor in tensors.items():
            self.context.set_tensor_address(name, tensor.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.spec.name}: TensorRT failed to enqueue")

    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor] | None = None,
            stream: torch.cuda.Stream | None = None) -> dict[str, torch.Tensor]:
        stream = stream or self.stream
        inputs = {n: feeds[n].contiguous() for n in self.spec.input_names}
        key = tuple(tuple(x.shape) for x in inputs.values())
        buffers = self._buffers.get(key) or self.prepare_shapes(dict(zip(self.spec.input_names, key)))
        self._set_shapes(key)
        self._bind_scratch()
        if self.cuda_graph:
            return self._replay(key, inputs, buffers, outputs or {}, stream)
        results = {**buffers, **(outputs or {})}
        self._enqueue({**inputs, **{n: results[n] for n in self.spec.output_names}}, stream)
        return {n: results[n] for n in self.spec.output_names}

    def _replay(self, key, inputs, buffers, outputs, stream) -> dict[str, torch.Tensor]:
        """CUDA graphs bake addresses in: feeds are copied into the graph's own input buffers (a
        device-to-device copy; skipped when the caller already wrote into ``graph_inputs``)."""
        if key not in self._graphs:
            self._graphs[key] = self._capture(key, buffers, stream)
        graph, static_inputs = self._graphs[key]
        with torch.cuda.stream(stream):
            for name, x in inputs.items():
                if x.data_ptr() != static_inputs[name].data_ptr():
                    static_inputs[name].copy_(x, non_blocking=True)
            graph.replay()
            for name, target in outputs.items():
                target.copy_(buffers[name], non_blocking=True)
        return {n: outputs.get(n, buffers[n]) for n in self.spec.output_names}

    def _capture(self, key, buffers, stream):
        static_inputs = {n: torch.empty(s, dtype=self._dtypes[n], device=self.device)
                         for n, s in zip(self.spec.input_names, key)}
        tensors = {**static_inputs, **buffers}
        self._enqueue(tensors, stream)  # TensorRT does its lazy set-up outside the capture
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            self._enqueue(tensors, stream)
        return graph, static_inputs

    def graph_inputs(self, **axes: int) -> dict[str, torch.Tensor]:
        """The captured graph's input buffers for a shape: write feeds here to skip the copy."""
        key = tuple(self.spec.shapes(**axes).values())
        if key not in self._graphs:
            self._set_shapes(key)
            self._bind_scratch()
            self._graphs[key] = self._capture(key, self.prepare_shapes(dict(zip(self.spec.input_names, key))),
                                              self.stream)
        return self._graphs[key][1]

    def refit(self, onnx_path: str | Path) -> None:
        """New weights from an ONNX file of the same architecture, without rebuilding the plan."""
        from refsd_trt.export.tensorrt_build import refit

        refit(self.engine, Path(onnx_path))
        self._graphs.clear()

    def close(self) -> None:
        self._graphs.clear()
        self._buffers.clear()
        self.context = self.engine = None
