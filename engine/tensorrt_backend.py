"""Native TensorRT behind the ``Engine`` interface (GPU machines only; ``tensorrt`` imported lazily).

Streams. Each engine enqueues on its own CUDA stream, never on the legacy default stream (handle 0:
TensorRT documents extra device synchronizations per call there, and torch refuses to capture CUDA
graphs on it). ``run`` orders that stream after the caller's (``stream``, default torch's current
stream): the engine's stream waits for the work that produced the feeds, and the caller's stream
waits for the engine before anything it enqueues next reads the outputs. Temporaries the engine
makes are allocated on its own stream, so the caching allocator reuses them only after its work.

Memory. Execution contexts are created with user-managed activation memory from the one
``ScratchMemory`` of their device, shared by every engine on it and sized for the shapes in use
(``update_device_memory_size_for_shapes`` after each new set of input shapes), not for the
profile's maximum. Its uses are ordered by an event, so engines on different streams never
overlap in it.

Bindings. TensorRT requires 256-byte aligned tensor addresses; a feed or output that is not (a row
of a larger tensor, a strided view, another dtype) goes through a persistent aligned buffer of the
engine's, and every ``set_tensor_address`` is checked. For a prepared static shape, the enqueue can
be captured once in a CUDA graph (on the engine's stream) and replayed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar

import torch

from refsd_trt.engine.base import Engine
from refsd_trt.engine.dtypes import float_precision
from refsd_trt.modelspec import ModelSpec

log = logging.getLogger(__name__)

# setTensorAddress: "The pointer must have at least 256-byte alignment" (NvInferRuntime.h).
ALIGNMENT = 256


def _tensorrt():
    from refsd_trt.export.tensorrt_build import import_tensorrt

    return import_tensorrt()


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int64: torch.int64, trt.bool: torch.bool, trt.uint8: torch.uint8, trt.bfloat16: torch.bfloat16}
    return table[dtype]


def aligned(pointer: int, alignment: int = ALIGNMENT) -> bool:
    return pointer % alignment == 0


def bindable(tensor: torch.Tensor, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether TensorRT can read or write ``tensor`` in place: the engine's dtype and device,
    contiguous, and 256-byte aligned. Anything else goes through the engine's own buffer."""
    return (tensor.dtype == dtype and tensor.device == device and tensor.is_contiguous()
            and aligned(tensor.data_ptr()))


def engine_precision(dtypes: Iterable[torch.dtype]) -> str:
    """float16 if any input *or output* is: a text encoder's only input is int64 token ids, yet
    its fp16 engine returns fp16 hidden states (callers allocate outputs by this)."""
    return float_precision(dtypes)


def device_memory_size(engine) -> int:
    """The engine's activation memory upper bound over its profiles: ``device_memory_size_v2``
    (TensorRT >= 10.1; the only one in TensorRT 11, which may be 0), else ``device_memory_size``."""
    size = getattr(engine, "device_memory_size_v2", None)
    return int(engine.device_memory_size if size is None else size)


def set_address(context, name: str, pointer: int) -> None:
    if not aligned(pointer):
        raise ValueError(f"tensor {name} at {pointer:#x} is not {ALIGNMENT}-byte aligned, as TensorRT requires")
    if not context.set_tensor_address(name, pointer):
        raise RuntimeError(f"TensorRT refused the address of tensor {name} ({pointer:#x})")


class ScratchMemory:
    """One growable device buffer for the activations of every TensorRT engine on a device.

    ``reserve`` grows it to the largest size asked for (waiting for its last use first);
    ``generation`` changes with the buffer so each engine re-binds (and re-captures its CUDA
    graphs) before its next run instead of using the freed pointer. ``acquire``/``release``
    bracket every use: a stream waits for the previous user's event before it enqueues work that
    touches the buffer."""

    _shared: ClassVar[dict[int, ScratchMemory]] = {}

    def __init__(self, device: torch.device):
        self.device, self.buffer, self.generation, self._last_use = torch.device(device), None, 0, None

    @classmethod
    def shared(cls, device: torch.device) -> ScratchMemory:
        """The one scratch of ``device`` (every engine loaded on it shares it)."""
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        if index not in cls._shared:
            cls._shared[index] = cls(torch.device("cuda", index))
        return cls._shared[index]

    @property
    def nbytes(self) -> int:
        return 0 if self.buffer is None else self.buffer.numel()

    def reserve(self, nbytes: int) -> None:
        if nbytes <= self.nbytes and self.buffer is not None:
            return
        # Set-up only: nothing may still run in the old buffer, nor in memory the new one reuses.
        torch.cuda.synchronize(self.device)
        self.buffer = None  # free it before allocating the larger one
        self.buffer = torch.empty(max(int(nbytes), ALIGNMENT), dtype=torch.uint8, device=self.device)
        self.generation += 1

    @property
    def pointer(self) -> int:
        return self.buffer.data_ptr()

    def acquire(self, stream: torch.cuda.Stream) -> None:
        if self._last_use is not None:
            stream.wait_event(self._last_use)

    def release(self, stream: torch.cuda.Stream) -> None:
        event = torch.cuda.Event()
        event.record(stream)
        self._last_use = event


class TrtEngine(Engine):
    """``TrtEngine(spec, "model.plan", device="cuda:0", cuda_graph=True)``."""

    backend = "tensorrt"

    def __init__(self, spec: ModelSpec, plan_path: str | Path, device: str | torch.device = "cuda",
                 scratch: ScratchMemory | None = None, stream: torch.cuda.Stream | None = None,
                 cuda_graph: bool = False):
        from refsd_trt.export.tensorrt_build import logger

        trt = _tensorrt()
        self.spec, self.path = spec, Path(plan_path)
        device = torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"TensorRT engines run on a CUDA device, not {device}")
        self.device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        # Deserialize, create the context and allocate on the engine's device, not the current one.
        with torch.cuda.device(self.device):
            self.stream = stream or torch.cuda.Stream(self.device)
            if self.stream.cuda_stream == 0:
                raise ValueError("TensorRT engines need a non-default CUDA stream (the legacy default stream "
                                 "adds device synchronizations and cannot be captured in CUDA graphs)")
            self._runtime = trt.Runtime(logger())
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise RuntimeError(f"{self.path}: TensorRT could not deserialize this plan (other TensorRT version or GPU?)")
            self.context = self.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        self.scratch = scratch or ScratchMemory.shared(self.device)
        self._bound_generation: int | None = None  # the scratch generation the context holds
        self._rebind = True  # the context's activation size changed: hand it the memory again
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        missing = set(spec.input_names + spec.output_names) - set(names)
        if missing:
            raise ValueError(f"{self.path} does not match spec {spec.name}: it lacks tensors {sorted(missing)}")
        self.precision = engine_precision(self._dtypes[n] for n in (*spec.input_names, *spec.output_names))
        self.cuda_graph = self.fixed_shapes = cuda_graph
        self._buffers: dict[tuple, dict[str, torch.Tensor]] = {}  # engine-owned outputs, per input shapes
        self._staging: dict[tuple, dict[str, torch.Tensor]] = {}  # aligned copies of unbindable feeds
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor]]] = {}
        self._shape_key: tuple | None = None
        self.activation_bytes: dict[tuple, int] = {}  # per input shapes, what TensorRT asked for

    def prepare(self, **axes: int) -> None:
        self.prepare_shapes(self.spec.shapes(**axes))

    def prepare_shapes(self, input_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
        """Set input shapes, size the shared scratch for them, allocate the outputs (set-up only)."""
        key = tuple(tuple(input_shapes[n]) for n in self.spec.input_names)
        if key not in self._buffers:
            self._set_shapes(key)
            with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
                self._buffers[key] = {
                    n: torch.empty(tuple(self.context.get_tensor_shape(n)), dtype=self._dtypes[n], device=self.device)
                    for n in self.spec.output_names
                }
        return self._buffers[key]

    def _set_shapes(self, key: tuple) -> None:
        if key == self._shape_key:
            return
        for name, shape in zip(self.spec.input_names, key):
            if not self.context.set_input_shape(name, shape):
                raise ValueError(f"{self.spec.name}: shape {shape} of {name} is outside the engine's profile")
        # The activation memory these shapes need (0 means TensorRT could not say: take the bound).
        needed = self.context.update_device_memory_size_for_shapes() or device_memory_size(self.engine)
        self.activation_bytes[key] = needed
        self.scratch.reserve(needed)
        self._shape_key = key
        self._rebind = True

    def _bind_scratch(self) -> None:
        if self._bound_generation != self.scratch.generation:
            self._graphs.clear()  # captured graphs hold the old scratch pointer
            self._rebind = True
        if self._rebind:
            if hasattr(self.context, "set_device_memory"):  # TensorRT >= 10.1
                self.context.set_device_memory(self.scratch.pointer, self.scratch.nbytes)
            else:
                self.context.device_memory = self.scratch.pointer
            self._bound_generation, self._rebind = self.scratch.generation, False

    def _enqueue(self, tensors: Mapping[str, torch.Tensor]) -> None:
        for name, tensor in tensors.items():
            set_address(self.context, name, tensor.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(f"{self.spec.name}: TensorRT failed to enqueue")

    def _bound_inputs(self, key: tuple, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Feeds TensorRT can read in place, others copied (on the engine's stream) into aligned buffers."""
        bound = {}
        for name, shape in zip(self.spec.input_names, key):
            x, dtype = feeds[name], self._dtypes[name]
            if x.dtype != dtype:
                raise TypeError(f"{self.spec.name}: input {name} is {x.dtype}, the engine takes {dtype}")
            if bindable(x, dtype, self.device):
                bound[name] = x
                continue
            staging = self._staging.setdefault(key, {})
            if name not in staging:
                staging[name] = torch.empty(shape, dtype=dtype, device=self.device)
            bound[name] = staging[name].copy_(x, non_blocking=True)
        return bound

    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor] | None = None,
            stream: torch.cuda.Stream | None = None) -> dict[str, torch.Tensor]:
        caller = stream or torch.cuda.current_stream(self.device)
        outputs = outputs or {}
        key = tuple(tuple(feeds[n].shape) for n in self.spec.input_names)
        buffers = self._buffers.get(key) or self.prepare_shapes(dict(zip(self.spec.input_names, key)))
        self._set_shapes(key)
        self.stream.wait_stream(caller)  # the feeds are written by work on the caller's stream
        self.scratch.acquire(self.stream)
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            self._bind_scratch()
            if self.cuda_graph:
                results = self._replay(key, feeds, buffers, outputs)
            else:
                direct = {n: t for n, t in outputs.items() if bindable(t, self._dtypes[n], self.device)}
                written = {**buffers, **direct}
                self._enqueue({**self._bound_inputs(key, feeds), **{n: written[n] for n in self.spec.output_names}})
                for name, target in outputs.items():
                    if name not in direct:
                        target.copy_(buffers[name], non_blocking=True)
                results = {n: outputs.get(n, buffers[n]) for n in self.spec.output_names}
        self.scratch.release(self.stream)
        caller.wait_stream(self.stream)  # what the caller enqueues next sees the outputs
        return results

    def _replay(self, key, feeds, buffers, outputs) -> dict[str, torch.Tensor]:
        """CUDA graphs bake addresses in: feeds are copied into the graph's own input buffers (a
        device-to-device copy; skipped when the caller already wrote into ``graph_inputs``)."""
        if key not in self._graphs:
            self._graphs[key] = self._capture(key, buffers)
        graph, static_inputs = self._graphs[key]
        for name in self.spec.input_names:
            x = feeds[name]
            if x.dtype != self._dtypes[name]:
                raise TypeError(f"{self.spec.name}: input {name} is {x.dtype}, the engine takes {self._dtypes[name]}")
            if x.data_ptr() != static_inputs[name].data_ptr():
                static_inputs[name].copy_(x, non_blocking=True)
        graph.replay()
        for name, target in outputs.items():
            target.copy_(buffers[name], non_blocking=True)
        return {n: outputs.get(n, buffers[n]) for n in self.spec.output_names}

    def _capture(self, key, buffers):
        """Capture one enqueue on the engine's own (non-default) stream; runs with the engine's
        device and stream current."""
        static_inputs = {n: torch.empty(s, dtype=self._dtypes[n], device=self.device)
                         for n, s in zip(self.spec.input_names, key)}
        tensors = {**static_inputs, **buffers}
        self._enqueue(tensors)  # TensorRT does its lazy set-up outside the capture
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self._enqueue(tensors)
        return graph, static_inputs

    def graph_inputs(self, **axes: int) -> dict[str, torch.Tensor]:
        """The captured graph's input buffers for a shape: write feeds here to skip the copy."""
        key = tuple(self.spec.shapes(**axes).values())
        if key not in self._graphs:
            buffers = self.prepare_shapes(dict(zip(self.spec.input_names, key)))
            self._set_shapes(key)
            self.scratch.acquire(self.stream)
            with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
                self._bind_scratch()
                self._graphs[key] = self._capture(key, buffers)
            self.scratch.release(self.stream)
        return self._graphs[key][1]

    def refit(self, onnx_path: str | Path) -> None:
        """New weights from an ONNX file of the same architecture, without rebuilding the plan
        (engines built refittable only). Waits for this engine's work in flight first."""
        from refsd_trt.export.tensorrt_build import refit

        if not getattr(self.engine, "refittable", True):
            raise RuntimeError(f"{self.path} was not built refittable (export it with refittable=True)")
        with torch.cuda.device(self.device):
            self.stream.synchronize()
            refit(self.engine, Path(onnx_path))
        self._graphs.clear()

    def close(self) -> None:
        if self.context is not None:
            self.stream.synchronize()  # nothing in flight may still use the buffers freed here
        self._graphs.clear()
        self._buffers.clear()
        self._staging.clear()
        self.context = self.engine = None
