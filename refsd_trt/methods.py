"""Presets to running objects: which detector and which method a preset builds, from what weights.

Tables drive the dispatch; each builder validates what it is given. Engines come from
``refsd_trt.engine.load_engine`` (backend ``auto`` measures and records the fastest one here), so
nothing in the pipelines knows which backend runs.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from refsd_trt.config import RunConfig, preset_settings
from refsd_trt.detection import PersonDetector, YoloPersonDetector, lite_detector
from refsd_trt.detection.runner import IMGSZ
from refsd_trt.engine.resident import OneModelAtATime
from refsd_trt.export.specs import IMAGE, AxisRange
from refsd_trt.models import tiny_zoo
from refsd_trt.models.loaders import resolve_model_dir, resolve_weights_file
from refsd_trt.presets import Preset, weights_search_path
from refsd_trt.stages import Method

if TYPE_CHECKING:
    from refsd_trt.pipelines.inpaint import InpaintSettings
    from refsd_trt.pipelines.lite import LiteSettings
    from refsd_trt.pipelines.refsd import RefsdSettings

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


# The components that run bf16 by default on CPUs with bf16 hardware, chosen by their error against
# fp32 at real shapes (README "Benchmarks", bench/figures/real-cpu.json). The text encoders stay fp32:
# they cost little (77 tokens once per crop) and their error would reach every denoising step; the
# detectors run from their ONNX exports on onnxruntime (their code is copyleft), which has no bf16.
BF16_COMPONENTS = frozenset({"unet", "vae_encoder", "vae_decoder"})


# The backends with bf16 CPU engines (engine.factory.available_backends).
BF16_BACKENDS = ("auto", "torch", "openvino")


def precision_for(device: torch.device, component: str, choice: str = "auto", backend: str = "auto") -> str:
    """The engine precision of ``component``: ``choice`` where the user forced one (a forced bfloat16
    still leaves the detectors fp32, see BF16_COMPONENTS); otherwise fp16 on GPUs (TensorRT builds
    strongly typed fp16 networks), bf16 on CPUs that multiply bf16 in hardware (AMX, AVX-512 BF16)
    for the components whose accuracy allows it where ``backend`` has bf16 engines, and fp32
    elsewhere (fp16 on CPUs runs slower and less exactly; emulated bf16 runs slower than fp32)."""
    from refsd_trt.engine.cpu_features import cpu_features

    if choice == "bfloat16":
        return choice if component in BF16_COMPONENTS else "float32"
    if choice != "auto":
        return choice
    if device.type == "cuda":
        return "float16"
    bf16 = component in BF16_COMPONENTS and backend in BF16_BACKENDS and cpu_features().fast_bf16
    return "bfloat16" if bf16 else "float32"


def diffusion_rows(component: str, config: RunConfig, role: str | None = None) -> int:
    """The batch a diffusion engine runs per call in ``role`` ("removal", "refiner", "inpainter"):
    the UNet sees each crop twice with classifier-free guidance; an inpainting stage below full
    strength encodes the image and the masked image in one VAE call (refsd's removal runs at
    strength 1, from noise); everything else one row per crop."""
    n = config.crop_batch_size
    guidance = config.removal_guidance_scale if role == "removal" else config.guidance_scale
    if component == "unet":
        return 2 * n if guidance is None or guidance > 1.0 else n
    if component == "vae_encoder" and role in ("inpainter", None) and config.strength < 1.0:
        return 2 * n
    return n


def timing_axes(component: str, config: RunConfig, role: str | None = None, size: int | None = None) -> dict[str, int]:
    """The shape ``auto`` times backends at: the one the engine will run, its batch and (``size``,
    the model's working size) its resolution. On CPUs the winner at one small input is often the
    loser at the real batch (2.6x for the detector at 8 × 640²)."""
    if component in ("yolo_seg", "yolo_pose"):
        return {"batch": config.batch_size, "height": IMGSZ, "width": IMGSZ}
    if component in ("unet", "vae_encoder", "vae_decoder"):
        return {"batch": diffusion_rows(component, config, role)} | ({"height": size, "width": size} if size else {})
    return {}


def engine_profile(component: str, config: RunConfig, role: str | None = None,
                   size: int | None = None) -> dict[str, AxisRange]:
    """The TensorRT optimization profile of a diffusion engine for this use: its batch up to the
    rows it runs (opt there too; its activation memory is sized by the profile's maximum, which for
    the spec's 16 × 1536² is tens of GB for an SDXL VAE), and the stage's working size as the
    optimum (any size in the spec's range still runs). Other components keep their spec's profile."""
    if component not in ("unet", "vae_encoder", "vae_decoder"):
        return {}
    rows = diffusion_rows(component, config, role)
    profile = {"batch": AxisRange(1, rows, rows)}
    if size is not None and IMAGE.min <= size <= IMAGE.max:
        profile |= {"height": AxisRange(IMAGE.min, size, IMAGE.max), "width": AxisRange(IMAGE.min, size, IMAGE.max)}
    return profile


def native_size(folder: Path) -> int | None:
    """The resolution a diffusers pipeline's UNet was trained at (its stages' working size), or None."""
    try:
        unet = json.loads((Path(folder) / "unet" / "config.json").read_text())
        vae = json.loads((Path(folder) / "vae" / "config.json").read_text())
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def backend_for(component: str, backend: str) -> str:
    """``backend`` for ``component``, except that a model whose code is copyleft (the YOLO detectors)
    never runs on the torch backend, which would run that code in this process: its ONNX export runs
    on onnxruntime instead."""
    from refsd_trt.export.sources import component as component_of

    return "onnxruntime" if backend == "torch" and component_of(component).copyleft else backend


def _engine_factory(config: RunConfig, device: torch.device) -> Callable[..., object]:
    from refsd_trt.engine import load_engine
    from refsd_trt.engine.host_memory import budget_bytes

    budget = budget_bytes(config.memory_budget_gb) if device.type == "cpu" else None

    def make(source: Path, component: str, role: str | None = None, size: int | None = None):
        profile = engine_profile(component, config, role, size) if device.type == "cuda" else {}
        backend = backend_for(component, config.backend)
        return load_engine(source, component, backend=backend, device=device,
                           precision=precision_for(device, component, config.precision, backend),
                           axes=timing_axes(component, config, role, size), memory_budget=budget,
                           **({"profile": profile} if profile else {}))

    return make


def build_detector(preset: Preset, config: RunConfig, device: torch.device) -> PersonDetector:
    if preset.method == "lite":
        return lite_detector(device=device, conf=config.conf)
    make = _engine_factory(config, device)
    pose = make(model_path(preset, "pose"), "yolo_pose") if _method_name(preset, config) == "refsd" else None
    return YoloPersonDetector(make(model_path(preset, "detector"), "yolo_seg"), conf=config.conf, pose_engine=pose)


def _components(preset: Preset, config: RunConfig, device: torch.device, role: str,
                turns: OneModelAtATime | None = None):
    """A diffusion model's components; a preset's separate ``vae`` (the fp16-safe SDXL VAE) replaces
    the pipeline's own VAE for the SDXL roles. With ``turns``, its engines take turns in memory with
    the other models' there (``refsd_trt.engine.resident``)."""
    from refsd_trt.diffusion import load_components

    make = _engine_factory(config, device)
    folder = model_path(preset, role)
    vae = model_path(preset, "vae") if "vae" in preset.models and role in ("refiner", "inpainter") else folder
    size = native_size(folder)
    engine = lambda name: make(vae if name.startswith("vae") else folder, name, role, size)
    if turns is not None:
        return load_components(folder, lambda name: turns.wrap(role, lambda: engine(name)), config.scheduler, vae=vae)
    return load_components(folder, engine, config.scheduler, vae=vae)


# The one place the effective RunConfig becomes what each method runs with.

def _effective(config: RunConfig) -> RunConfig:
    unset = sorted(name for name in preset_settings() if getattr(config, name) is None)
    if unset:
        raise ValueError(f"the configuration is not resolved for a preset ({', '.join(unset)} unset): "
                         f"build methods from RunConfig.resolved(preset), as Anonymizer.from_preset does")
    return config


def lite_settings(config: RunConfig) -> LiteSettings:
    from refsd_trt.pipelines.lite import LiteSettings

    return LiteSettings(dilate_px=config.dilate_px, crop_scale=config.crop_scale)


def inpaint_settings(config: RunConfig) -> InpaintSettings:
    from refsd_trt.pipelines.inpaint import InpaintSettings

    c = _effective(config)
    return InpaintSettings(steps=c.steps, strength=c.strength, guidance_scale=c.guidance_scale,
                           negative_prompt=c.negative_prompt, crop_scale=c.crop_scale, dilate_px=c.dilate_px,
                           feather_px=c.feather_px, batch_size=c.crop_batch_size)


def refsd_settings(config: RunConfig) -> RefsdSettings:
    from refsd_trt.pipelines.refsd import RefsdSettings

    c = _effective(config)
    return RefsdSettings(removal_prompt=c.removal_prompt, removal_negative_prompt=c.removal_negative_prompt,
                         removal_steps=c.removal_steps, removal_guidance_scale=c.removal_guidance_scale,
                         steps=c.steps, strength=c.strength, guidance_scale=c.guidance_scale,
                         negative_prompt=c.negative_prompt, crop_scale=c.crop_scale, dilate_px=c.dilate_px,
                         feather_px=c.feather_px, batch_size=c.crop_batch_size)


def _lite(preset: Preset, config: RunConfig, device: torch.device) -> Method:
    from refsd_trt.pipelines.avatars import BodyModelAvatars
    from refsd_trt.pipelines.lite import LiteMethod

    return LiteMethod(BodyModelAvatars(), device, lite_settings(config))


# inpaint starts from the person's own latent, noised: above this signal-to-noise ratio the start holds
# more of the person than of noise (SDXL inpainting, 30 steps: 1.85 at strength 0.3, 0.94 at 0.4).
MAX_START_SNR = 1.0


def _inpaint(preset: Preset, config: RunConfig, device: torch.device) -> Method:
    from refsd_trt.diffusion.timesteps import weakest_strength
    from refsd_trt.pipelines.inpaint import InpaintMethod

    settings = inpaint_settings(config)
    components = _components(preset, config, device, "inpainter")
    method = InpaintMethod(components, settings)
    snr = method.stage.start_snr
    if preset.anonymizes and snr > MAX_START_SNR:  # the tiny preset's random models anonymize nothing anyway
        floor = weakest_strength(components.new_scheduler(), settings.steps, MAX_START_SNR)
        raise ValueError(f"strength {settings.strength:g} is too weak for inpaint to anonymize: with {settings.steps} "
                         f"steps it starts from the person's own latent at signal-to-noise {snr:.2f}, more person "
                         f"than noise; use strength {math.ceil(floor * 100) / 100:g} or more")
    return method


def _refsd(preset: Preset, config: RunConfig, device: torch.device) -> Method:
    from refsd_trt.pipelines.avatars import BodyModelAvatars
    from refsd_trt.pipelines.refsd import RefsdMethod

    settings = refsd_settings(config)
    # On CPUs the two diffusion models take turns in host memory (full size: SD 1.5 inpainting 4.3 GB,
    # SDXL base 8.7 GB with its fp16-only UNet kept in fp16; together with activations past a 16 GB
    # budget, engine.resident): each batch loads the one it runs and frees the other. The refiner is built first, then released for the removal model
    # the first batch runs. GPUs keep both (fp16: about 2.1 + 6.9 GB).
    turns = OneModelAtATime() if device.type == "cpu" else None
    refiner = _components(preset, config, device, "refiner", turns)
    return RefsdMethod(_components(preset, config, device, "removal", turns), refiner, settings,
                       avatars=BodyModelAvatars())


METHODS: dict[str, Callable[[Preset, RunConfig, torch.device], Method]] = {
    "lite": _lite, "inpaint": _inpaint, "refsd": _refsd}


def _method_name(preset: Preset, config: RunConfig) -> str:
    name = config.method or preset.method
    if (preset.method == "lite") != (name == "lite"):
        raise ValueError(f"preset {preset.name!r} runs the {preset.method} method only, not {name!r}")
    return name


def build_method(preset: Preset, config: RunConfig, device: torch.device) -> Method:
    return METHODS[_method_name(preset, config)](preset, config, device)
