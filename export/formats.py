"""The export table: one row per artifact format, and ``export`` which dispatches through it.

Formats form a chain (torch -> onnx -> onnx-fp16 -> tensorrt-fp16): each row names its parent,
what decides its content key, and how to build it into a staging folder. ``export`` resolves the
parent first (from the cache when possible), then looks its own artifact up by content key, so an
unchanged second export is a cache hit and a corrupt cached file is rebuilt, never loaded.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from refsd_trt.export import artifacts, fp16, onnx_cleanup, sources, tensorrt_build, torch_to_onnx, validation
from refsd_trt.export.specs import AxisRange, ModelSpec
from refsd_trt.models import loaders

log = logging.getLogger(__name__)

EXPORT_FORMAT_VERSION = 1  # bump when what an export writes changes for the same inputs
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class Request:
    """Everything an export depends on besides the source bytes, validated up front."""

    ref: Path
    component: str
    opset: int = DEFAULT_OPSET
    validate: bool = True
    axes: Mapping[str, AxisRange] = field(default_factory=dict)  # profile overrides (TensorRT)
    workspace_gib: float | None = None
    refittable: bool = False  # TensorRT: build with REFIT (new weights without a rebuild; slower plans)

    def __post_init__(self) -> None:
        sources.component(self.component)  # raises with the list of known components
        if not self.ref.exists():
            raise FileNotFoundError(f"{self.ref}: no such model folder or weights file")
        if self.opset not in torch_to_onnx.OPSETS:
            raise ValueError(f"opset must be in {torch_to_onnx.OPSETS.start}..{torch_to_onnx.OPSETS.stop - 1}")


@dataclass(frozen=True)
class Format:
    name: str
    precision: str
    main_file: str
    parent: str | None
    key: Callable[[Request, artifacts.Artifact | None], dict]  # what decides the bytes
    build: Callable[[Request, Path, artifacts.Artifact | None], dict]  # writes, returns manifest entries
    description: str
    available: Callable[[], object] = lambda: None  # raises, naming what is missing on this machine


# --- onnx: torch -> ONNX fp32, cleaned, validated; stores the torch reference I/O for its children.

def _onnx_key(req: Request, parent) -> dict:
    comp = sources.component(req.component)
    return {
        "source": artifacts.source_digest(comp.files(req.ref)),
        "component": req.component,
        "opset": req.opset,
        "validate": req.validate,
        "tools": artifacts.tool_versions("torch", "onnx", "onnxslim", *comp.libraries),
    }


def _build_onnx(req: Request, staging: Path, parent) -> dict:
    loaded = sources.load(req.ref, req.component)
    feeds, outputs = validation.reference(loaded.model, loaded.spec)
    model_file = staging / "model.onnx"
    torch_to_onnx.export(loaded, model_file, feeds, req.opset)
    spec, config, files = loaded.spec, loaded.config, loaded.component.files(req.ref)
    # Let the torch model go before onnxruntime loads the file: a full-size SDXL UNet is 10 GB in
    # each (the loaders' cache holds models weakly).
    del loaded
    cleanup = onnx_cleanup.clean(model_file)
    validation.save_reference(staging / validation.REFERENCE_FILE, feeds, outputs)
    checked = (validation.validate_onnx(model_file, spec, staging / validation.REFERENCE_FILE, "float32")
               if req.validate else None)
    return {"config": config, "cleanup": cleanup, "validation": checked,
            "source": {"ref": str(req.ref.resolve()), "sha256": artifacts.source_digest(files),
                       "files": [str(p) for p in files]}}


# --- onnx-fp16: the fp32 graph converted, validated against the same torch outputs.

def _fp16_key(req: Request, parent) -> dict:
    return {"parent": parent.manifest["key"], "validate": req.validate, "rules": fp16.RULES_VERSION,
            "tools": artifacts.tool_versions("onnx", "onnxruntime")}


def _build_fp16(req: Request, staging: Path, parent) -> dict:
    model_file = staging / "model.onnx"
    converted = fp16.convert(parent.main_file, model_file)
    spec = sources.spec_of(req.component, parent.manifest["config"])
    checked = (validation.validate_onnx(model_file, spec, parent.folder / validation.REFERENCE_FILE, "float16")
               if req.validate else None)
    return {"config": parent.manifest["config"], "conversion": converted, "validation": checked,
            "source": parent.manifest["source"]}


# --- tensorrt(-fp16): a strongly typed engine for this GPU and TensorRT version.

def _profile(req: Request, parent) -> dict:
    spec = profiled_spec(sources.spec_of(req.component, parent.manifest["config"]), req.axes)
    return {name: [list(s) for s in shapes] for name, shapes in spec.profile().items()}


def _trt_key(req: Request, parent) -> dict:
    trt = tensorrt_build.import_tensorrt()
    return {"onnx_sha256": parent.manifest["files"]["model.onnx"]["sha256"], "tensorrt": trt.__version__,
            "gpu": tensorrt_build.gpu_name(), "profile": _profile(req, parent), "workspace_gib": req.workspace_gib,
            "refittable": req.refittable, "tools": artifacts.tool_versions("tensorrt")}


def _build_trt(req: Request, staging: Path, parent) -> dict:
    profile = {k: tuple(tuple(s) for s in v) for k, v in _profile(req, parent).items()}
    facts = tensorrt_build.build(parent.main_file, profile, staging / "model.plan", req.workspace_gib,
                                 refit=req.refittable)
    return {"config": parent.manifest["config"], "profile": _profile(req, parent), "build": facts,
            "onnx": str(parent.main_file), "source": parent.manifest["source"]}


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("onnx", "float32", "model.onnx", None, _onnx_key, _build_onnx,
               "ONNX fp32 (TorchScript exporter, onnxslim clean-up), checked on onnxruntime-CPU"),
        Format("onnx-fp16", "float16", "model.onnx", "onnx", _fp16_key, _build_fp16,
               "ONNX fp16 inputs, outputs and weights, checked against torch fp32"),
        Format("tensorrt", "float32", "model.plan", "onnx", _trt_key, _build_trt,
               "TensorRT engine from the fp32 ONNX (GPU machines)", tensorrt_build.gpu_name),
        Format("tensorrt-fp16", "float16", "model.plan", "onnx-fp16", _trt_key, _build_trt,
               "TensorRT engine from the fp16 ONNX, strongly typed (GPU machines)", tensorrt_build.gpu_name),
    )
}


def profiled_spec(spec: ModelSpec, axes: Mapping[str, AxisRange]) -> ModelSpec:
    unknown = set(axes) - set(spec.axes)
    if unknown:
        raise ValueError(f"{spec.name}: no axes {sorted(unknown)} to override; it has {sorted(spec.axes)}")
    return replace(spec, axes={**spec.axes, **axes})


class ExportNeeded(RuntimeError):
    """A checkpoint whose model code the runtime will not run has no cached ONNX export and cannot be
    exported here: the message says what to install and run."""


def export(ref: str | Path, component: str, format: str = "onnx", *, root: Path | None = None,
           progress: Callable[[str], None] | None = None, isolate: bool = False, **options) -> artifacts.Artifact:
    """Export ``component`` of the checkpoint at ``ref`` as ``format`` (a key of ``FORMATS``),
    building parents first; returns the cached artifact when its content key is unchanged.

    ``isolate`` (the runtime's loads): a component whose model code is copyleft is exported to ONNX in
    a child process, so that code never runs in the caller's; without its library, ``ExportNeeded``."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    req = Request(loaders.resolve_reference(ref), component, **options)  # a hub id: its cached snapshot
    FORMATS[format].available()  # before any parent is exported
    return _export(req, FORMATS[format], root or artifacts.artifacts_root(), progress or log.info, isolate)


def _export_in_child(req: Request, fmt: Format, root: Path) -> None:
    """Run the ONNX export of ``req`` in a child Python (``refsd_trt.export.child``)."""
    comp = sources.component(req.component)
    missing = [lib for lib in comp.libraries if importlib.util.find_spec(lib) is None]
    if missing:
        raise ExportNeeded(
            f"{req.ref}: the runtime loads ONNX only and no {req.component} export is cached; export it once "
            f"with the export extra: pip install 'refsd-trt[export]' && refsd-trt export {req.ref} -c {req.component}")
    job = {"ref": str(req.ref), "component": req.component, "format": fmt.name, "root": str(root),
           "opset": req.opset, "validate": req.validate, "workspace_gib": req.workspace_gib,
           "axes": {name: [r.min, r.opt, r.max] for name, r in req.axes.items()}}
    child = subprocess.run([sys.executable, "-m", "refsd_trt.export.child", json.dumps(job)],
                           capture_output=True, text=True, check=False)
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        raise RuntimeError(f"exporting {req.component} of {req.ref} to ONNX failed: {last}")


def _export(req: Request, fmt: Format, root: Path, progress: Callable[[str], None],
            isolate: bool = False) -> artifacts.Artifact:
    parent = _export(req, FORMATS[fmt.parent], root, progress, isolate) if fmt.parent else None
    payload = fmt.key(req, parent)
    key = artifacts.content_key({"format": fmt.name, "version": EXPORT_FORMAT_VERSION, **payload})
    folder = root / f"{req.component}-{fmt.name}-{key}"
    if (hit := artifacts.lookup(folder)) is not None:
        progress(f"{req.component} {fmt.name}: cached {hit.main_file}")
        return hit
    progress(f"{req.component} {fmt.name}: building {folder}")
    if isolate and parent is None and sources.component(req.component).copyleft:
        _export_in_child(req, fmt, root)
        if (made := artifacts.lookup(folder)) is None:
            raise RuntimeError(f"exporting {req.component} of {req.ref}: the child wrote no {folder}")
        progress(f"{req.component} {fmt.name}: wrote {made.main_file} (in a child process)")
        return made

    def build(staging: Path) -> dict:
        entries = fmt.build(req, staging, parent)
        spec = sources.spec_of(req.component, entries["config"])
        return {"format": fmt.name, "component": req.component, "kind": sources.component(req.component).kind,
                "key": key, "precision": fmt.precision, "opset": req.opset,
                "inputs": _tensors(spec.inputs, fmt.precision), "outputs": _tensors(spec.outputs, fmt.precision),
                "profile": spec.profile(), "tools": {**(parent.manifest["tools"] if parent else {}), **payload["tools"]},
                **entries}

    made = artifacts.publish(folder, build, fmt.main_file)
    progress(f"{req.component} {fmt.name}: wrote {made.main_file}")
    return made


def _tensors(tensors, precision: str) -> list[dict]:
    return [{"name": t.name, "dtype": str(t.torch_dtype(precision)).removeprefix("torch."), "shape": list(t.shape)}
            for t in tensors]
