"""The diffusion models at their real sizes and resolutions, refsd-trt's CPU engine against diffusers fp32.

Per-step cost at real channel widths and resolutions does not depend on weight values, so the real
architectures (``refsd_trt/models/real_configs``) with random weights give honest timings for the
real presets. Each case loads refsd-trt's engine as the pipeline does (``load_engine``, backend
``auto``, the default CPU precision of ``methods.precision_for``) and the diffusers model as a CPU
user runs it (``from_pretrained`` in fp32, default threads, called directly), from the same weight
files; then alternates the two, several rounds, and reports median wall and CPU time, their ratio,
the error of refsd-trt's output against diffusers' and the FLOP/s each side achieved against this
machine's measured fp32 and bf16 matrix-product peaks. ``quick=True`` runs the same code on the
narrowed configs (``real_layout_zoo``'s shrink) at small sizes: a test of the machinery, not a figure.

Full size needs about 16 GB at its peak (SDXL's UNet: bf16 engine 5.2 GB beside diffusers' fp32 10.3 GB):
hold the full-size lock (``make bench-real`` does).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from refsd_trt.bench.flops import measured_matmul_flops
from refsd_trt.engine import load_engine
from refsd_trt.methods import precision_for
from refsd_trt.models import real_layout_zoo
from refsd_trt.paths import cache_dir

CPU = torch.device("cpu")
SD15 = "stable-diffusion-v1-5/stable-diffusion-inpainting"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_VAE = "madebyollin/sdxl-vae-fp16-fix"
SOURCE_FORMAT = 1  # bump when what write_source writes changes


@dataclass(frozen=True)
class Case:
    name: str
    repo: str
    component: str  # unet | vae_encoder | vae_decoder
    size: int  # image pixels (latents are size / 8)
    batch: int  # UNet: 2 rows per crop with classifier-free guidance
    # Both sides resident at once, their rounds alternating. SDXL's UNet cannot: OpenVINO's engine holds
    # about 12 GB (fp32 constants read from the ONNX file beside its bf16 copies) and diffusers' fp32
    # model 10.3 GB, past this 24 GB machine (measured: killed for memory). Its sides run one after the other.
    together: bool = True


CASES = (
    Case("SD 1.5 inpainting UNet step", SD15, "unet", 512, 2),
    Case("SD 1.5 VAE encode", SD15, "vae_encoder", 512, 1),
    Case("SD 1.5 VAE decode", SD15, "vae_decoder", 512, 1),
    Case("SDXL base UNet step", SDXL, "unet", 1024, 2, together=False),
    Case("SDXL VAE (fp16-fix) encode", SDXL_VAE, "vae_encoder", 1024, 1),
    Case("SDXL VAE (fp16-fix) decode", SDXL_VAE, "vae_decoder", 1024, 1),
)
QUICK_SIZE = 256  # the narrowed models at the smallest size every engine's profile takes


@dataclass
class Row:
    case: Case
    size: int  # the size run: the case's, or QUICK_SIZE
    backend: str
    precision: str
    rounds: int
    alternated: bool  # False: each side's rounds ran while the other side's model was not loaded
    refsd_s: list[float] = field(default_factory=list)  # wall, per round
    diffusers_s: list[float] = field(default_factory=list)
    refsd_cpu_s: list[float] = field(default_factory=list)  # process CPU time, per round
    diffusers_cpu_s: list[float] = field(default_factory=list)
    gflop: float = 0.0  # per call, counted on the diffusers model
    max_abs_error: float = 0.0  # refsd-trt's output against diffusers fp32, same weights and inputs
    relative_error: float = 0.0  # ‖refsd - diffusers‖ / ‖diffusers‖
    reference_max_abs: float = 0.0  # the size of the values compared
    peak_rss_gb: float = 0.0  # the process's peak so far (getrusage): it only grows
    load_average: list[float] = field(default_factory=list)  # after the case: other work on a shared machine

    @property
    def speedup(self) -> float:
        return statistics.median(self.diffusers_s) / statistics.median(self.refsd_s)

    @property
    def cpu_speedup(self) -> float:
        return statistics.median(self.diffusers_cpu_s) / statistics.median(self.refsd_cpu_s)

    def achieved_gflops(self, side: str) -> float:
        return self.gflop / statistics.median(self.refsd_s if side == "refsd" else self.diffusers_s)

    def to_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup, "cpu_speedup": self.cpu_speedup,
                "refsd_median_s": statistics.median(self.refsd_s),
                "diffusers_median_s": statistics.median(self.diffusers_s),
                "refsd_gflops": self.achieved_gflops("refsd"), "diffusers_gflops": self.achieved_gflops("diffusers")}


# --- sources: the real configs with random fp16 weights, in the folders load_engine and diffusers read.

def write_source(repo: str, folder: Path, shrink: bool) -> None:
    """``repo``'s UNet and VAE (a standalone VAE: itself) with random weights, stored as the fp16
    variant only, as a ``--include '*.fp16.*'`` download holds them: the CPU engines keep or cast
    fp16 (5.2 GB for SDXL's UNet instead of 10.3 GB in fp32) and diffusers upcasts exactly."""
    configs = real_layout_zoo.config_folder(repo)
    parts = [""] if repo == SDXL_VAE else ["unet", "vae"]
    if parts != [""]:
        index = json.loads((configs / "model_index.json").read_text())
        keep = {k: v for k, v in index.items() if k.startswith("_") or k in parts}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model_index.json").write_text(json.dumps(keep, indent=2))
    for part in parts:
        cfg = real_layout_zoo.written_config(configs / part / "config.json", shrink)
        (folder / part).mkdir(parents=True, exist_ok=True)
        (folder / part / "config.json").write_text(json.dumps(cfg, indent=2))
        _write_fp16_weights(cfg, folder / part / "diffusion_pytorch_model.fp16.safetensors", seed=len(repo) + len(part))


def _write_fp16_weights(cfg: dict, path: Path, seed: int) -> None:
    import diffusers
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = getattr(diffusers, cfg["_class_name"]).from_config(cfg)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    del model
    save_file(state, str(path), metadata={"format": "pt"})


def source(repo: str, shrink: bool, root: Path | None = None) -> Path:
    """The folder of ``repo``'s random-weight copy, written once per layout and size."""
    root = root or cache_dir() / "real-shapes"
    folder = root / f"{repo.replace('/', '--')}-{'shrunk' if shrink else 'full'}-v{SOURCE_FORMAT}"
    done = folder / ".complete"
    if not done.is_file():
        staging = folder.with_name(folder.name + ".partial")
        if staging.exists():
            import shutil

            shutil.rmtree(staging)
        write_source(repo, staging, shrink)
        staging.rename(folder)
        done.touch()
    return folder


# --- the diffusers side: the model called as a CPU user calls it.

def diffusers_model(case: Case, folder: Path) -> torch.nn.Module:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    sub = folder if case.repo == SDXL_VAE else folder / ("unet" if case.component == "unet" else "vae")
    cls = UNet2DConditionModel if case.component == "unet" else AutoencoderKL
    return cls.from_pretrained(sub, variant="fp16", torch_dtype=torch.float32).eval().requires_grad_(False)


def diffusers_call(case: Case, model: torch.nn.Module, feeds: dict[str, torch.Tensor]) -> Callable[[], torch.Tensor]:
    """The call a diffusers user makes, returning what refsd-trt's engine returns (its first output)."""
    if case.component == "unet":
        added = ({"text_embeds": feeds["text_embeds"], "time_ids": feeds["time_ids"]}
                 if "time_ids" in feeds else None)
        return lambda: model(feeds["sample"], feeds["timestep"], feeds["encoder_hidden_states"],
                             added_cond_kwargs=added).sample
    if case.component == "vae_encoder":
        return lambda: model.encode(feeds["images"]).latent_dist.parameters
    return lambda: model.decode(feeds["latents"]).sample


# --- timing.

def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kilobytes


def measure_case(case: Case, folder: Path, rounds: int, size: int, progress: Callable[[str], None]) -> Row:
    precision = precision_for(CPU, case.component)
    axes = {"batch": case.batch, "height": size, "width": size}
    if case.component == "unet":
        axes["tokens"] = 77
    # refsd-trt's engine first: its loading may export to ONNX in a child process, which should not
    # run beside diffusers' fp32 copy of the model
    engine = load_engine(folder, case.component, backend="auto", device=CPU, precision=precision,
                         axes=axes, progress=progress)
    feeds = engine.spec.example_inputs(engine.precision, CPU, **axes)
    row = Row(case, size, engine.backend, engine.precision, rounds, case.together)
    with torch.inference_mode():  # warm-up, which also gives the output compared with diffusers'
        got = engine.run(feeds)[engine.spec.output_names[0]].clone()
    sides = {"refsd": lambda: engine.run(feeds)}
    if not case.together:
        _rounds(row, sides, rounds, progress)
        engine.close()
        del sides["refsd"], engine
        gc.collect()
    model = diffusers_model(case, folder)
    sides["diffusers"] = plain = diffusers_call(case, model, feeds)
    with torch.inference_mode():
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:  # diffusers' warm-up
            want = plain()
        row.gflop = counter.get_total_flops() / 1e9
    row.max_abs_error = (got - want).abs().max().item()
    row.relative_error = ((got - want).norm() / want.norm()).item()
    row.reference_max_abs = want.abs().max().item()
    del got, want
    _rounds(row, sides, rounds, progress)
    row.peak_rss_gb, row.load_average = peak_rss_gb(), list(os.getloadavg())
    if case.together:
        engine.close()
    return row


def _rounds(row: Row, sides: dict[str, Callable[[], object]], rounds: int, progress: Callable[[str], None]) -> None:
    """``rounds`` timed calls of each side present, alternating which goes first."""
    order = list(sides.items())
    for r in range(rounds):
        for side, fn in order if r % 2 == 0 else order[::-1]:
            wall, cpu = _timed(fn)
            getattr(row, f"{side}_s").append(wall)
            getattr(row, f"{side}_cpu_s").append(cpu)
            progress(f"{row.case.name} round {r + 1}/{rounds}: {side} {wall:.2f} s (CPU {cpu:.1f} s)")


def measure(quick: bool = False, rounds: int | None = None, root: Path | None = None,
            progress: Callable[[str], None] = print, measured: Callable[[dict], None] | None = None,
            earlier: list[dict] = ()) -> dict:
    """The machine's matmul peaks, every case, then each preset's projected seconds per person.
    ``measured`` gets the rows so far after each case (a full run takes tens of minutes); cases with
    a row in ``earlier`` (an interrupted run's) keep it and are not measured again."""
    rounds = rounds or (2 if quick else 3)
    size = 1024 if quick else 4096
    peaks = {"fp32_gflops": measured_matmul_flops(dtype=torch.float32, size=size) / 1e9,
             "bf16_gflops": measured_matmul_flops(dtype=torch.bfloat16, size=size) / 1e9}
    kept = {row["case"]["name"]: row for row in earlier}
    rows = []
    for case in CASES:
        if case.name in kept:
            rows.append(kept[case.name])
            continue
        folder = source(case.repo, shrink=quick, root=root)
        rows.append(measure_case(case, folder, rounds, QUICK_SIZE if quick else case.size, progress).to_dict())
        gc.collect()  # each case's models are freed before the next loads: SDXL's UNet is 10.3 GB in fp32
        if measured is not None:
            measured({"quick": quick, "rounds": rounds, "matmul_peaks": peaks, "rows": rows})
    return {"quick": quick, "rounds": rounds, "matmul_peaks": peaks, "torch_threads": torch.get_num_threads(),
            "rows": rows, "projection": projection(rows)}


# --- per person, from the presets' own settings.

def projection(rows: list[dict]) -> dict[str, dict]:
    """Seconds per person on this CPU for the real presets, refsd-trt and diffusers fp32: each stage's
    steps × one measured UNet step (batch 2: one crop with guidance) + its VAE calls. SDXL's
    inpainting UNet (9 input channels) is costed as the base UNet's step (4): the first convolution
    is all that differs. The detector runs once per image, not per person, and is left out here."""
    from refsd_trt.config import RunConfig
    from refsd_trt.presets import PRESETS

    by_name = {row["case"]["name"]: row for row in rows}
    med = lambda name, side: statistics.median(by_name[name][f"{side}_s"])
    out = {}
    for preset in ("refsd", "inpaint"):
        c = RunConfig().resolved(PRESETS[preset])
        sdxl_steps = int(c.steps * c.strength)  # img2img/inpainting below strength 1 runs this many
        for side in ("refsd", "diffusers"):
            sdxl = (sdxl_steps * med("SDXL base UNet step", side) + med("SDXL VAE (fp16-fix) encode", side)
                    * (2 if preset == "inpaint" else 1) + med("SDXL VAE (fp16-fix) decode", side))
            if preset == "refsd":  # removal from noise: all its steps, masked image encoded once
                sdxl += (c.removal_steps * med("SD 1.5 inpainting UNet step", side)
                         + med("SD 1.5 VAE encode", side) + med("SD 1.5 VAE decode", side))
            out.setdefault(preset, {})[f"{side}_s_per_person"] = sdxl
        out[preset] |= {"sdxl_steps": sdxl_steps, "removal_steps": c.removal_steps if preset == "refsd" else 0,
                        "speedup": out[preset]["diffusers_s_per_person"] / out[preset]["refsd_s_per_person"]}
    return out


def table(result: dict) -> str:
    lines = [("| model, shape | refsd-trt engine | refsd-trt s (CPU s) | diffusers fp32 s (CPU s) | speed-up "
              "(CPU time) | GFLOP | refsd-trt GFLOP/s | max abs err (rel) |"),
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        c = r["case"]
        lines.append(
            f"| {c['name']}, {r['size']}², batch {c['batch']} | {r['backend']} {r['precision']} | "
            f"{r['refsd_median_s']:.2f} ({statistics.median(r['refsd_cpu_s']):.1f}) | "
            f"{r['diffusers_median_s']:.2f} ({statistics.median(r['diffusers_cpu_s']):.1f}) | "
            f"{r['speedup']:.2f}× ({r['cpu_speedup']:.2f}×) | {r['gflop']:.0f} | {r['refsd_gflops']:.0f} | "
            f"{r['max_abs_error']:.3g} ({r['relative_error']:.2%}) |")
    p = result["matmul_peaks"]
    lines.append(f"\nmatmul peaks here: fp32 {p['fp32_gflops']:.0f} GFLOP/s, bf16 {p['bf16_gflops']:.0f} GFLOP/s "
                 f"({result['torch_threads']} threads)")
    for preset, proj in result["projection"].items():
        lines.append(f"{preset}: {proj['refsd_s_per_person']:.0f} s per person with refsd-trt, "
                     f"{proj['diffusers_s_per_person']:.0f} s with diffusers fp32 ({proj['speedup']:.2f}×)")
    return "\n".join(lines)
