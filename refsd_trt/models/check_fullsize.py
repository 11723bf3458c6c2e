"""``make check-fullsize``: full-size diffusion models through the real export path on CPU.

Each model is built from its repository's real configuration (``real_configs/``) with seeded random
weights (the graph and the cost do not depend on the values), then taken through what the presets
run, ``refsd_trt.export.formats.export``: torch -> ONNX (TorchScript exporter, clean-up, checked on
onnxruntime against torch), then -> fp16 ONNX (checked the same way). One step is then compared with
torch fp32 on the same feeds, at a reduced latent size (the graphs' spatial axes are dynamic): the fp32
ONNX at a tight tolerance, the fp16 ONNX with its error stated. The fp16 graph is read back to check
that the time sinusoids and every normalization stayed fp32 (``fp16.fp32_report``).

Every step runs in a child process, so each reports its own wall and CPU time and peak RSS. The
multi-GB folder and artifacts live in a temporary folder under the cache and are removed at the end.
Slow (tens of minutes on 2 cores) and memory-hungry (the Makefile target holds the shared full-size
lock); not part of ``make test``. Usage: ``python -m refsd_trt.models.check_fullsize [--model NAME]
[--latent 64] [--out bench/figures/fullsize-check.json]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

TIMESTEP = 999.0  # the sinusoid's hardest point in fp16 (export/fp16.py)


@dataclass(frozen=True)
class Settings:
    """What every step of a run shares."""

    latent: int = 64  # latent height and width of the compared step
    shrink: bool = False  # the real layout's narrowed configs (a quick run of the same code, for tests)


@dataclass(frozen=True)
class FullSizeModel:
    name: str
    repo: str  # the Hugging Face id whose configuration ``real_configs/`` holds
    part: str  # its folder in that repository ("" for a standalone VAE repository)
    component: str  # a component of refsd_trt.export.sources


MODELS = (
    FullSizeModel("sd15-inpaint-unet", "stable-diffusion-v1-5/stable-diffusion-inpainting", "unet", "unet"),
    FullSizeModel("sdxl-base-unet", "stabilityai/stable-diffusion-xl-base-1.0", "unet", "unet"),
    FullSizeModel("sdxl-vae-fp16-fix-decoder", "madebyollin/sdxl-vae-fp16-fix", "", "vae_decoder"),
    # Not fp16-fixed: the norms kept fp32 are what keeps its fp16 decoder finite.
    FullSizeModel("sd15-inpaint-vae-decoder", "stable-diffusion-v1-5/stable-diffusion-inpainting", "vae", "vae_decoder"),
)
STEPS = ("build", "onnx", "onnx-fp16", "torch", "ort-fp32", "ort-fp16")


def _model(name: str) -> FullSizeModel:
    return next(m for m in MODELS if m.name == name)


# --- the steps, each run in its own child process.

def build(model: FullSizeModel, work: Path, settings: Settings) -> dict:
    """The model's folder as its repository lays it out: config and fp32 safetensors, with a
    ``model_index.json`` naming the one component for a pipeline part."""
    import diffusers
    import torch

    from refsd_trt.models import real_layout_zoo

    config = real_layout_zoo.config_folder(model.repo) / model.part / "config.json"
    cfg = real_layout_zoo.written_config(config, shrink=settings.shrink)
    # Seeded by name: SD 1.5's VAE and SDXL's share an architecture, not their weights.
    torch.manual_seed(int(hashlib.sha256(model.name.encode()).hexdigest()[:8], 16))
    net = getattr(diffusers, cfg["_class_name"]).from_config(cfg)
    folder = _folder(model, work)
    net.save_pretrained(folder / model.part, max_shard_size="100GB")
    if model.part:
        (folder / "model_index.json").write_text(json.dumps({model.part: ["diffusers", cfg["_class_name"]]}))
    return {"parameters": sum(p.numel() for p in net.parameters()),
            "weights_bytes": sum(p.stat().st_size for p in (folder / model.part).glob("*.safetensors"))}


def _folder(model: FullSizeModel, work: Path) -> Path:
    return work / "models" / model.name


def _artifact(model: FullSizeModel, work: Path, fmt: str):
    from refsd_trt.export.formats import export

    return export(_folder(model, work), model.component, fmt, root=work / "artifacts", progress=lambda _: None)


def _files(artifact) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(artifact.folder.iterdir()) if p.name.startswith("model.onnx")}


def export_onnx(model: FullSizeModel, work: Path, settings: Settings) -> dict:
    artifact = _artifact(model, work, "onnx")
    return {"files": _files(artifact), "cleanup": artifact.manifest["cleanup"],
            "validation": artifact.manifest["validation"]}


def export_fp16(model: FullSizeModel, work: Path, settings: Settings) -> dict:
    from refsd_trt.export import fp16, onnx_files

    artifact = _artifact(model, work, "onnx-fp16")
    report = fp16.fp32_report(onnx_files.load_graph(artifact.main_file))
    return {"files": _files(artifact), "conversion": artifact.manifest["conversion"],
            "validation": artifact.manifest["validation"],
            "fp32_report": {op: {t: types.count(t) for t in sorted(set(types))} for op, types in report.items()}}


@contextmanager
def _timed():
    """Yields a dict that gets the block's wall and CPU seconds (every thread of the process)."""
    times: dict[str, float] = {}
    wall, cpu = time.monotonic(), time.process_time()
    yield times
    times.update(wall_s=round(time.monotonic() - wall, 1), cpu_s=round(time.process_time() - cpu, 1))


def _reference_file(model: FullSizeModel, work: Path) -> Path:
    return work / f"{model.name}-step.safetensors"


def torch_step(model: FullSizeModel, work: Path, settings: Settings) -> dict:
    """One forward of the torch fp32 model at the settings' latent size, feeds and outputs saved."""
    import torch

    from refsd_trt.export import sources, validation

    latent = settings.latent
    loaded = sources.load(_folder(model, work), model.component)
    axes = {"batch": 1, "height": 8 * latent, "width": 8 * latent}
    axes.update({"tokens": 77} if "tokens" in loaded.spec.axes else {})
    feeds = loaded.spec.example_inputs(**axes)
    if "timestep" in feeds:
        feeds["timestep"].fill_(TIMESTEP)
    if "time_ids" in feeds:  # original size, crop top-left, target size, as diffusers builds them
        size = float(8 * latent)
        feeds["time_ids"][:] = torch.tensor([size, size, 0.0, 0.0, size, size][:feeds["time_ids"].shape[1]])
    with _timed() as forward, torch.no_grad():
        outputs = loaded.model(*(feeds[n] for n in loaded.spec.input_names))
    validation.save_reference(_reference_file(model, work), feeds, dict(zip(loaded.spec.output_names, outputs)))
    return {"shapes": {k: list(v.shape) for k, v in feeds.items()}, "forward": forward}


def _ort_step(model: FullSizeModel, work: Path, fmt: str) -> dict:
    import torch

    from refsd_trt.engine.onnxruntime_backend import OrtEngine
    from refsd_trt.export import sources, validation

    artifact = _artifact(model, work, fmt)
    spec = sources.spec_of(model.component, artifact.manifest["config"])
    feeds, want = validation.load_reference(_reference_file(model, work))
    engine = OrtEngine(spec, artifact.main_file, device="cpu")
    with _timed() as forward:
        got = engine.run({n: feeds[n].to(engine.input_dtype(n)) for n in spec.input_names})
    precision = artifact.manifest["precision"]
    errors = {}
    for name, ref in want.items():
        diff = (got[name].float() - ref.float()).abs()
        scale = float(ref.abs().max())
        errors[name] = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "max_abs_ref": scale,
                        "relative": float(diff.max()) / max(1.0, scale), "finite": bool(torch.isfinite(got[name]).all())}
    tolerance = validation.TOLERANCE[precision]
    return {"runtime": engine.backend, "forward": forward, "errors": errors, "tolerance": tolerance,
            "rule": "max|onnx - torch| <= tolerance * max(1, max|torch|)",
            "ok": all(e["finite"] and e["relative"] <= tolerance for e in errors.values())}


STEP_FUNCTIONS = {
    "build": build, "onnx": export_onnx, "onnx-fp16": export_fp16, "torch": torch_step,
    "ort-fp32": lambda model, work, settings: _ort_step(model, work, "onnx"),
    "ort-fp16": lambda model, work, settings: _ort_step(model, work, "onnx-fp16"),
}


def child(step: str, name: str, work: Path, settings: Settings) -> int:
    """Run one step in this process; write its result, times and peak RSS to ``work``."""
    with _timed() as times:
        result = STEP_FUNCTIONS[step](_model(name), work, settings)
    result.update(times, peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2))
    (work / f"{name}-{step}.json").write_text(json.dumps(result))
    return 0


def run_step(step: str, model: FullSizeModel, work: Path, settings: Settings) -> dict:
    done = subprocess.run([sys.executable, "-m", "refsd_trt.models.check_fullsize", "--child", step, model.name,
                           str(work), "--latent", str(settings.latent), *(["--shrink"] if settings.shrink else [])],
                          capture_output=True, text=True, check=False)
    out = work / f"{model.name}-{step}.json"
    if done.returncode != 0 or not out.is_file():
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"failed": last, "exit": done.returncode}
    return json.loads(out.read_text())


def check(model: FullSizeModel, work: Path, settings: Settings) -> dict:
    """Every step of one model, stopping at the first that fails; its folder and artifacts removed."""
    record: dict = {"model": asdict(model), "latent": [settings.latent] * 2, "shrink": settings.shrink}
    try:
        for step in STEPS:
            record[step] = run_step(step, model, work, settings)
            print(json.dumps({"model": model.name, "step": step, **record[step]}), flush=True)
            if "failed" in record[step]:
                break
    finally:
        shutil.rmtree(_folder(model, work), ignore_errors=True)
        shutil.rmtree(work / "artifacts", ignore_errors=True)
        _reference_file(model, work).unlink(missing_ok=True)
    record["ok"] = passed(record)
    return record


def passed(record: dict) -> bool:
    """Every step ran, both ONNX files matched torch within their tolerance, and the fp16 graph
    kept its sinusoids and normalizations fp32."""
    if any("failed" in record.get(step, {"failed": "not run"}) for step in STEPS):
        return False
    kept = record["onnx-fp16"]["fp32_report"]
    return record["ort-fp32"]["ok"] and record["ort-fp16"]["ok"] and all(set(types) == {"float32"} for types in kept.values())


def machine() -> dict:
    import os

    import psutil

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 1e9, 1), "python": platform.python_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=[m.name for m in MODELS], help="default: all")
    parser.add_argument("--latent", type=int, default=64, help="latent height and width of the compared step")
    parser.add_argument("--shrink", action="store_true", help="the narrowed configs: a quick run of the same code")
    parser.add_argument("--out", type=Path, help="write the figures (JSON) here")
    parser.add_argument("--child", nargs=3, metavar=("STEP", "MODEL", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = Settings(args.latent, args.shrink)
    if args.child:
        return child(args.child[0], args.child[1], Path(args.child[2]), settings)
    from refsd_trt.export.artifacts import tool_versions
    from refsd_trt.paths import cache_dir

    cache_dir().mkdir(parents=True, exist_ok=True)
    models = [_model(n) for n in args.model] if args.model else list(MODELS)
    with tempfile.TemporaryDirectory(prefix="fullsize-check-", dir=cache_dir()) as tmp:
        records = [check(model, Path(tmp), settings) for model in models]
    figures = {"machine": machine(), "tools": tool_versions("torch", "diffusers", "onnx", "onnxruntime"),
               "models": records}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    for r in records:
        print(f"{'OK  ' if r['ok'] else 'FAIL'} {r['model']['name']}", flush=True)
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
