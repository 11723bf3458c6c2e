"""Presets to running objects: which detector and which method a preset builds, from what weights.

Tables drive the dispatch; each builder validates what it is given. Engines come from
``refsd_trt.engine.load_engine`` (backend ``auto`` measures and records the fastest one here), so
nothing in the pipelines knows which backend runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from refsd_trt.config import RunConfig
from refsd_trt.detection import PersonDetector, YoloPersonDetector, lite_detector
from refsd_trt.detection.runner import IMGSZ
from refsd_trt.models import tiny_zoo
from refsd_trt.models.loaders import resolve_model_dir, resolve_weights_file
from refsd_trt.presets import Preset, weights_search_path
from refsd_trt.stages import Method

log = logging.getLogger(__name__)


def model_path(preset: Preset, role: str) -> Path:
    """Where ``preset``'s model for ``role`` lives on this machine (tiny-zoo entries are built once)."""
    if role not in preset.models:
        raise ValueError(f"preset {preset.name!r} has no {role} model (has: {', '.join(preset.models)})")
    ref = preset.models[role]
    if preset.zoo:
        folder = tiny_zoo.entry_path(ref)
        weights = tiny_zoo.ENTRIES[ref].weights_file
        return folder / weights if weights else folder
    return resolve_weights_file(ref, weights_search_path()) if ref.endswith(".pt") else resolve_model_dir(ref)


def precision_for(device: torch.device) -> str:
    """fp16 engines on GPUs (TensorRT builds strongly typed fp16 networks); fp32 on CPUs, where
    fp16 runs slower and less exactly."""
    return "float16" if device.type == "cuda" else "float32"


def timing_axes(component: str, config: RunConfig) -> dict[str, int]:
    """The shape ``auto`` times backends at: the one the engine will run. On CPUs the winner at one
    small input is often the loser at the real batch (2.6x for the detector at 8 × 640²)."""
    if component in ("yolo_seg", "yolo_pose"):
        return {"batch": config.batch_size, "height": IMGSZ, "width": IMGSZ}
    if component in ("unet", "vae_encoder", "vae_decoder"):
        return {"batch": config.crop_batch_size}
    return {}


def _engine_factory(config: RunConfig, device: torch.device) -> Callable[..., object]:
    from refsd_trt.engine import load_engine

    def make(source: Path, component: str):
        return load_engine(source, component, backend=config.backend, device=device,
                           precision=precision_for(device), axes=timing_axes(component, config))

    return make


def build_detector(preset: Preset, config: RunConfig, device: torch.device) -> PersonDetector:
    if preset.method == "lite":
        return lite_detector(device=device, conf=config.conf)
    make = _engine_factory(config, device)
    pose = make(model_path(preset, "pose"), "yolo_pose") if _method_name(preset, config) == "refsd" else None
    return YoloPersonDetector(make(model_path(preset, "detector"), "yolo_seg"), conf=config.conf, pose_engine=pose)


def _components(preset: Preset, config: RunConfig, device: torch.device, role: str):
    """A diffusion model's components; a preset's separate ``vae`` (the fp16-safe SDXL VAE) replaces
    the pipeline's own VAE for the SDXL roles."""
    from refsd_trt.diffusion import load_components

    make = _engine_factory(config, device)
    folder = model_path(preset, role)
    vae = model_path(preset, "vae") if "vae" in preset.models and role in ("refiner", "inpainter") else folder
    return load_components(folder, lambda name: make(vae if name.startswith("vae") else folder, name),
                           config.scheduler)


def _lite(preset: Preset, config: RunConfig, device: torch.device) -> Method:
    from refsd_trt.pipelines.avatars import BodyModelAvatars
    from refsd_trt.pipelines.lite import LiteMethod, LiteSettings

    return LiteMethod(BodyModelAvatars(), device, LiteSettings(dilate_px=config.dilate_px))


def _inpaint(preset: Preset, config: RunConfig, device: torch.device) -> Method:
    from refsd_trt.pipelines.inpaint import InpaintMethod, InpaintSettings

    settings = InpaintSettings(steps=config.steps, strength=config.strength, guidance_scale=config.guidance_scale,
                               negative_prompt=config.negative_prompt, dilate_px=config.dilate_px,
                               feather_px=config.feather_px, batch_size=config.crop_batch_size)
    return InpaintMethod(_components(preset, config, device, "inpainter"), settings)


def _refsd(preset: Preset, config: RunConfig, device: torch.device) -> Method:
    from refsd_trt.pipelines.avatars import BodyModelAvatars
    from refsd_trt.pipelines.refsd import RefsdMethod, RefsdSettings

    settings = RefsdSettings(removal_steps=config.steps, steps=config.steps, strength=config.strength,
                             guidance_scale=config.guidance_scale, negative_prompt=config.negative_prompt,
                             dilate_px=config.dilate_px, feather_px=config.feather_px,
                             batch_size=config.crop_batch_size)
    return RefsdMethod(_components(preset, config, device, "removal"), _components(preset, config, device, "refiner"),
                       settings, avatars=BodyModelAvatars())


METHODS: dict[str, Callable[[Preset, RunConfig, torch.device], Method]] = {
    "lite": _lite, "inpaint": _inpaint, "refsd": _refsd}


def _method_name(preset: Preset, config: RunConfig) -> str:
    name = config.method or preset.method
    if (preset.method == "lite") != (name == "lite"):
        raise ValueError(f"preset {preset.name!r} runs the {preset.method} method only, not {name!r}")
    return name


def build_method(preset: Preset, config: RunConfig, device: torch.device) -> Method:
    return METHODS[_method_name(preset, config)](preset, config, device)
