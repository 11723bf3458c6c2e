"""``load_engine``: the one entry point the pipeline calls, without knowing about backends.

    unet = load_engine("path/to/sdxl", "unet", backend="auto", device="cuda", precision="float16")
    out = unet.run({"sample": x, "timestep": t, ...})

The source is a checkpoint reference plus a component name (exported and cached on demand), or
an artifact folder written by ``refsd-trt export``/``build`` (its manifest names the component).
``backend="auto"`` uses the winner recorded for this machine, device, precision and shape in the
artifact's manifest; if none is recorded yet it times every available backend once and records
the result, so later loads on the same machine decide instantly. With a ``memory_budget`` (host
memory, CPUs) it records how much each candidate holds, does not build one whose weights alone would
not fit what is left, and runs the fastest that fits (the fastest of the smallest if none does). It also measures,
once, whether the engine runs a batch faster one item at a time (CPUs, large activations) and if so
returns it wrapped to do that (``MicroBatched``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from refsd_trt.engine import host_memory, timing
from refsd_trt.engine.base import Engine
from refsd_trt.engine.micro_batch import MicroBatched, splittable
from refsd_trt.engine.resident import return_freed_memory
from refsd_trt.export import artifacts, sources
from refsd_trt.export.formats import export
from refsd_trt.export.specs import AxisRange, ModelSpec
from refsd_trt.export.validation import validation_axes

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("float32", "float16", "bfloat16")
# The artifact each compiled backend runs, by precision. OpenVINO compiles the fp32 ONNX to bf16
# itself (its inference precision hint), so bf16 needs no artifact of its own.
FORMATS = {
    ("onnxruntime", "float32"): "onnx",
    ("onnxruntime", "float16"): "onnx-fp16",
    ("openvino", "float32"): "onnx",
    ("openvino", "bfloat16"): "onnx",
    ("tensorrt", "float32"): "tensorrt",
    ("tensorrt", "float16"): "tensorrt-fp16",
}
# The ONNX artifact whose manifest records auto's timings for a precision (every compiled backend
# of that precision derives from it).
TIMINGS_FORMAT = {"float32": "onnx", "float16": "onnx-fp16", "bfloat16": "onnx"}


def available_backends(device: torch.device, precision: str = "float32") -> list[str]:
    """The backends that run ``precision`` on ``device`` here. bf16 is a CPU precision: torch (oneDNN,
    AMX) and OpenVINO where installed; onnxruntime has no bf16 CPU kernels worth timing."""
    found = ["torch"]
    if precision == "bfloat16":
        from refsd_trt.engine.openvino_backend import openvino_available

        return found + ["openvino"] if openvino_available() else found
    import onnxruntime as ort

    if device.type == "cpu" or "CUDAExecutionProvider" in ort.get_available_providers():
        found.append("onnxruntime")
    if device.type == "cuda":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            pass
        else:
            found.append("tensorrt")
    return found


def load_engine(source: str | Path, component: str | None = None, backend: str = "auto",
                device: str | torch.device = "cpu", precision: str = "float32", *,
                axes: Mapping[str, int] | None = None, profile: Mapping[str, AxisRange] | None = None,
                root: Path | None = None, progress: Callable[[str], None] | None = None,
                memory_budget: int | None = None, **engine_options) -> Engine:
    """An engine for ``component`` of ``source``. ``axes`` is the shape ``auto`` decides for (axes
    left out: the profile's smallest); ``profile`` narrows TensorRT's optimization profile (e.g.
    ``{"height": AxisRange(1024, 1024, 1024)}`` for a static-size engine); ``memory_budget``: the
    bytes of host memory this process may hold with the engine built, which ``auto`` chooses within
    on CPUs (None: speed alone); ``engine_options`` go to the backend's constructor
    (``scratch=``/``cuda_graph=`` for TensorRT, ``threads=`` for onnxruntime)."""
    device = torch.device(device)
    ref, component, precision = resolve_source(Path(source).expanduser(), component, precision)
    if precision == "bfloat16" and device.type != "cpu":
        raise ValueError(f"bfloat16 engines are for CPUs; {device} runs float16 or float32")
    if backend not in (*BACKENDS, "auto"):
        raise ValueError(f"backend must be one of {', '.join((*BACKENDS, 'auto'))}, got {backend!r}")
    if backend not in ("torch", "auto") and (backend, precision) not in FORMATS:
        raise ValueError(f"the {backend} backend has no {precision} engines")
    if backend == "auto":
        recorded = RecordedTimings.locate(ref, component, device, precision, axes, root, progress)
        headroom = None
        if memory_budget is not None and device.type == "cpu":
            return_freed_memory()  # what closed engines left on the heap is not held
            headroom = memory_budget - host_memory.rss_bytes()
        backend, timed = _choose_backend(recorded, ref, device, precision, profile, root, progress, headroom=headroom)
        if timed is not None and engine_options:  # built without the options asked for here
            timed.close()
            timed = None
        engine = timed or _build(backend, ref, component, device, precision, root, progress, profile, **engine_options)
        return _micro_batched(engine, recorded, progress)
    return _build(backend, ref, component, device, precision, root, progress, profile, **engine_options)


def resolve_source(source: Path, component: str | None, precision: str) -> tuple[Path, str, str]:
    """An artifact folder stands for its checkpoint, component and precision (checked, not trusted)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if (source / artifacts.MANIFEST).is_file():
        manifest = artifacts.verify(source).manifest  # a corrupt artifact raises, it is never loaded
        return Path(manifest["source"]["ref"]), manifest["component"], manifest["precision"]
    if component is None:
        raise ValueError(f"{source}: name the component to load (one of {', '.join(sources.COMPONENTS)})")
    return source, component, precision


def _build(backend: str, ref: Path, component: str, device: torch.device, precision: str, root, progress,
           profile=None, **engine_options) -> Engine:
    if backend == "torch":
        from refsd_trt.engine.torch_backend import TorchEngine

        if sources.component(component).copyleft:
            raise ValueError(f"the torch backend would run {sources.component(component).copyleft} code in this "
                             f"process; {component} runs from its ONNX export (onnxruntime or tensorrt)")
        from refsd_trt.models.loaders import fp16_weights_kept

        # on CPUs a variant-only fp16 checkpoint stays fp16 in memory; the engine computes in fp32 (or
        # casts it to bf16 without an fp32 copy of the whole model first: 5 GB less for SDXL's UNet)
        with fp16_weights_kept(device.type == "cpu" and precision in ("float32", "bfloat16")):
            loaded = sources.load(ref, component)
        return TorchEngine(loaded.spec, loaded.model, device, precision)
    artifact = export(ref, component, FORMATS[backend, precision], root=root, progress=progress,
                      axes=dict(profile or {}), isolate=True)
    spec = sources.spec_of(component, artifact.manifest["config"])
    if backend == "onnxruntime":
        from refsd_trt.engine.onnxruntime_backend import OrtEngine

        return OrtEngine(spec, artifact.main_file, device, **engine_options)
    if backend == "openvino":
        from refsd_trt.engine.openvino_backend import OpenVinoEngine

        return OpenVinoEngine(spec, artifact.main_file, device, precision, **engine_options)
    from refsd_trt.engine.tensorrt_backend import TrtEngine

    return TrtEngine(spec, artifact.main_file, device, **engine_options)


def choose_backend(ref: Path, component: str, device: torch.device, precision: str,
                   axes: Mapping[str, int] | None = None, *, profile: Mapping[str, AxisRange] | None = None,
                   root: Path | None = None, progress: Callable[[str], None] | None = None,
                   remeasure: bool = False) -> str:
    """The fastest backend for this machine and shape, measured once and recorded in the manifest
    of the ONNX artifact every compiled backend derives from."""
    recorded = RecordedTimings.locate(ref, component, device, precision, axes, root, progress)
    winner, engine = _choose_backend(recorded, ref, device, precision, profile, root, progress, remeasure)
    if engine is not None:
        engine.close()
    return winner


def micro_batched(engine: Engine, ref: Path, component: str, axes: Mapping[str, int] | None, *,
                  root: Path | None = None, progress: Callable[[str], None] | None = None,
                  remeasure: bool = False) -> Engine:
    """``engine``, or ``engine`` running its batches one item at a time where that was measured at
    least 5 % faster per item than the whole batch at once (recorded beside the backend timings)."""
    recorded = RecordedTimings.locate(ref, component, engine.device, engine.precision, axes, root, progress)
    return _micro_batched(engine, recorded, progress, remeasure)


@dataclass
class RecordedTimings:
    """Where ``auto``'s measurements for one model, machine and shape live: the manifest of the ONNX
    artifact every compiled backend derives from, under (device key, shape key). Locating it
    verifies (re-hashes) that artifact, so ``load_engine`` does it once for both decisions."""

    artifact: artifacts.Artifact
    spec: ModelSpec
    axes: dict[str, int]  # axes left out take the profile's smallest value; asked-for ones stay inside it
    where: str
    shape: str
    component: str  # the source's component ("text_encoder_2"); spec.name is its kind ("text_encoder")

    @classmethod
    def locate(cls, ref: Path, component: str, device: torch.device, precision: str,
               axes: Mapping[str, int] | None, root: Path | None, progress) -> RecordedTimings:
        artifact = export(ref, component, TIMINGS_FORMAT[precision], root=root, progress=progress, isolate=True)
        spec = sources.spec_of(component, artifact.manifest["config"])
        axes = {name: min(max(value, spec.axes[name].min), spec.axes[name].max) if name in spec.axes else value
                for name, value in {**validation_axes(spec), **(axes or {})}.items()}
        # bf16 shares the fp32 artifact: its timings live under their own machine key
        where = timing.device_key(device) + ("/bfloat16" if precision == "bfloat16" else "")
        return cls(artifact, spec, axes, where, timing.shape_key(spec.axis_values(**axes)), component)

    @property
    def entry(self) -> dict:
        return self.artifact.manifest.get("backends", {}).get(self.where, {}).get(self.shape, {})

    def save(self, entry: dict) -> None:
        records = self.artifact.manifest.get("backends", {})
        self.artifact = self.artifact.update_manifest(
            backends={**records, self.where: {**records.get(self.where, {}), self.shape: entry}})


def _choose_backend(recorded: RecordedTimings, ref: Path, device: torch.device, precision: str, profile, root, progress,
                    remeasure: bool = False, headroom: int | None = None) -> tuple[str, Engine | None]:
    """The winner, with its engine when it was the last one timed: loading that model again for the
    run would be its third load (export, timing, run). Every other candidate's engine is released
    before the next one is built, so two are never resident together: at full size an SDXL
    inpainting UNet is 10 GB in torch and 10 GB more in onnxruntime, and an earlier winner loads
    again (from the page cache) rather than double the peak. ``headroom``: the host memory left for
    this engine (None: no limit); see ``_within``."""
    component, where, shape = recorded.component, recorded.where, recorded.shape
    if not remeasure and "winner" in recorded.entry:
        return _within(recorded.entry, headroom, component, progress), None
    candidates = [b for b in available_backends(device, precision)
                  if not (b == "torch" and sources.component(component).copyleft)]  # its code stays out of process
    timings, resident, errors, skipped = {}, {}, {}, {}
    last = None  # (backend, engine): the last engine timed, still open
    for backend in candidates:
        weights = _weights_bytes(backend, recorded, precision)
        if headroom is not None and weights is not None and weights > headroom \
                and resident and weights >= min(resident.values()):
            # building it would cross the budget and it cannot be smaller than one already measured
            # (the first candidate is always built: a run over budget still needs an engine)
            skipped[backend] = f"its weights ({weights / 1e9:.1f} GB) exceed the {headroom / 1e9:.1f} GB left"
            continue
        if last is not None:
            last[1].close()  # and no reference left: a torch engine's memory goes with its module
            last = None
        return_freed_memory()  # so that the engine's own memory is what RSS grows by
        before = host_memory.rss_bytes()
        try:
            last = (backend, _build(backend, ref, component, device, precision, root, progress, profile))
            timings[backend] = timing.median_ms(last[1], recorded.spec.example_inputs(precision, device, **recorded.axes))
            return_freed_memory()  # what it holds between calls, not the activations its calls freed
            resident[backend] = max(host_memory.rss_bytes() - before, 0)
        except Exception as exc:  # noqa: BLE001 -- a backend that cannot run this model here does not compete
            errors[backend] = f"{type(exc).__name__}: {exc}"
            log.warning("%s on %s cannot run %s: %s", backend, where, component, exc)
    if not timings:
        raise RuntimeError(f"no backend can run {component} on {device}: {errors or skipped}")
    # "winner": the fastest; the choice under a budget is made from the record at each load
    entry = {"timings_ms": timings, "resident_bytes": resident, "winner": min(timings, key=timings.get),
             "errors": errors, **({"skipped": skipped} if skipped else {})}
    recorded.save(entry)
    winner = _within(entry, headroom, component, progress)
    (progress or log.info)(f"{component} {precision} on {where} at {shape}: "
                           + ", ".join(f"{b} {t:.1f} ms, {resident[b] / 1e9:.2f} GB" for b, t in timings.items())
                           + "".join(f"; {b} not built: {why}" for b, why in skipped.items()) + f" -> {winner}")
    if last is not None and last[0] != winner:
        last[1].close()
        last = None
    return winner, last[1] if last else None


# Engines holding the same weights measure a few % apart (the full-size SDXL inpainting UNet's fp32:
# 10.07 GB in onnxruntime, 10.31 GB in torch): within this factor of the smallest they count as one size.
SAME_SIZE = 1.1


def _within(entry: dict, headroom: int | None, component: str, progress) -> str:
    """The fastest recorded backend whose engine (as measured) fits in ``headroom``; if none does, the
    fastest of the smallest (within ``SAME_SIZE``). Records from before memory was measured, or no
    headroom given: the fastest."""
    timings, resident = entry["timings_ms"], entry.get("resident_bytes", {})
    if headroom is None or set(resident) != set(timings):
        chosen = entry["winner"]
    else:
        fits = [b for b in timings if resident[b] <= headroom]
        if not fits:
            smallest = min(resident.values())
            fits = [b for b in timings if resident[b] <= SAME_SIZE * smallest]
        chosen = min(fits, key=timings.get)
        if chosen != entry["winner"]:
            (progress or log.info)(
                f"{component}: {entry['winner']} is fastest but holds {resident[entry['winner']] / 1e9:.2f} GB, "
                f"{headroom / 1e9:.2f} GB are left in the memory budget: {chosen} ({resident[chosen] / 1e9:.2f} GB)")
    return chosen


def _weights_bytes(backend: str, recorded: RecordedTimings, precision: str) -> int | None:
    """What a compiled backend will hold before it is built: the ONNX artifact it loads, when that is
    the one the timings live in (CPU backends at fp32 or OpenVINO's bf16); None where not known."""
    if backend in ("onnxruntime", "openvino") and FORMATS.get((backend, precision)) == TIMINGS_FORMAT[precision]:
        return sum(f["bytes"] for f in recorded.artifact.manifest["files"].values())  # graph and external weights
    return None


def _micro_batched(engine: Engine, recorded: RecordedTimings, progress, remeasure: bool = False) -> Engine:
    batch, record = recorded.axes.get("batch", 1), recorded.entry
    if batch <= 1 or not splittable(engine.spec):
        return engine
    if remeasure or "micro_batch" not in record:
        inputs = lambda **axes: recorded.spec.example_inputs(engine.precision, engine.device, **axes)
        # the backend choice timed this batch already: at full size on a CPU one call is minutes
        timed = [ms for b, ms in record.get("timings_ms", {}).items() if engine.backend.startswith(b)]
        whole = timed[0] if timed and not remeasure else timing.median_ms(engine, inputs(**recorded.axes))
        one = timing.median_ms(engine, inputs(**{**recorded.axes, "batch": 1}))
        record = {**record, "micro_batch": 1 if one * batch < 0.95 * whole else batch,
                  "per_item_ms": {"whole_batch": whole / batch, "one_at_a_time": one}}
        recorded.save(record)
        (progress or log.info)(f"{recorded.spec.name} on {recorded.where} at {recorded.shape}: {whole / batch:.1f} ms per item "
                               f"batched, {one:.1f} ms one at a time -> micro-batch {record['micro_batch']}")
    size = record["micro_batch"]
    return MicroBatched(engine, size) if size < batch else engine
