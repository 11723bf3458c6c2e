"""One benchmark run: for each method, refsd-trt and the baseline built side by side in this
process, timed in alternating rounds on the same workloads, then refsd-trt's scaling sweeps;
returns the report as a dict."""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from refsd_trt.bench import analysis, scaling, targets
from refsd_trt.bench.baseline import BaselineSide
from refsd_trt.bench.flops import FlopModel, device_peak
from refsd_trt.bench.harness import SideRun, Workload, run_sides
from refsd_trt.bench.machine import load_average, machine_info, rss_bytes
from refsd_trt.bench.scenes import sample_scenes, synthetic_scenes
from refsd_trt.config import RunConfig
from refsd_trt.presets import PRESETS

REPORT_SCHEMA = 1
ORACLE_NOTE = (
    "The {preset} preset's detector has random weights and finds no real people, so both sides "
    "anonymize the people each scene is known to contain (hand-measured boxes with ellipse masks: "
    "the 'oracle'), passed to refsd-trt as Anonymizer(images, detections=...) and to the baseline "
    "directly. Each side's own detector (refsd-trt's engine, ultralytics' predictor; same weights) "
    "still runs on every image and is timed; their people counts must agree (parity check).")
DETECTOR_NOTE = "Each side anonymizes the people its own detector finds; the counts must agree."


@dataclass(frozen=True)
class BenchSettings:
    preset: str = "tiny"
    methods: tuple[str, ...] = ("inpaint", "refsd")
    images: int = 8
    people: int = 4
    size: tuple[int, int] = (512, 512)  # height, width of the synthetic scenes
    repeats: int = 3
    warmup: int = 1
    steps: int = 4
    batch_size: int = 8  # images per Anonymizer call
    crop_batch_size: int = 4  # person crops per UNet call (RunConfig's default)
    seed: int = 0
    device: str = "auto"
    backend: str = "auto"
    samples: bool = True  # also time the packaged photos (bus, zidane, astronaut)
    sweep: scaling.SweepSettings | None = field(default_factory=scaling.SweepSettings)
    flops: bool = True

    def run_config(self, method: str) -> RunConfig:
        # ``steps`` is every diffusion stage's: refsd's removal runs as many as its refinement.
        return RunConfig(preset=self.preset, method=method, steps=self.steps, removal_steps=self.steps,
                         batch_size=self.batch_size, crop_batch_size=self.crop_batch_size,
                         seed=self.seed, device=self.device, backend=self.backend)


def _workloads(settings: BenchSettings, folder: Path) -> list[Workload]:
    synthetic = synthetic_scenes(settings.images, settings.people, settings.size, settings.seed)
    found = [Workload.write("synthetic", synthetic, folder / "synthetic")]
    if settings.samples:
        found.append(Workload.write("samples", sample_scenes(), folder / "samples"))
    return found


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sweeps(settings: BenchSettings, config: RunConfig, ours) -> dict:
    from refsd_trt.api import Anonymizer
    from refsd_trt.bench.ours import RefsdTrtSide

    def side_with_crop_batch(crop_batch_size: int):
        if crop_batch_size == config.crop_batch_size:
            return ours
        return RefsdTrtSide(Anonymizer.from_preset(settings.preset, replace(config, crop_batch_size=crop_batch_size)))

    return {
        "people_per_image": scaling.people_sweep(ours, settings.sweep, settings.size, settings.seed),
        "crop_batch_size": scaling.crop_batch_sweep(side_with_crop_batch, settings.sweep, settings.size, settings.seed),
        "image_size": scaling.size_sweep(ours, settings.sweep, settings.seed),
    }


def _engines(anonymizer) -> dict[str, dict[str, str]]:
    """Which backend and precision each engine runs (``auto`` decides per machine)."""
    return {name: {"backend": e.backend, "precision": e.precision} for name, e in anonymizer.engines.items()}


def _workload_report(w: Workload, runs: dict[str, SideRun], model_rss: dict[str, int], breakdown: dict) -> dict:
    stages = analysis.stage_names(list(runs.values()))
    summaries = {name: analysis.side_summary(run, w, stages) for name, run in runs.items()}
    for name, summary in summaries.items():
        summary["memory"]["model_rss_mib"] = model_rss[name] / 2**20
    summaries["refsd-trt"]["where_the_time_goes"] = breakdown
    return {
        "workload": w.describe(),
        **summaries,
        "comparison": analysis.comparison(summaries["refsd-trt"], summaries["baseline"], stages),
        "parity": analysis.parity(runs["refsd-trt"], runs["baseline"], w),
    }


def run_method(settings: BenchSettings, method: str, workloads: list[Workload], work: Path,
               progress: Callable[[str], None], peak: float | None = None) -> dict:
    from refsd_trt.api import Anonymizer
    from refsd_trt.bench.ours import RefsdTrtSide

    preset = PRESETS[settings.preset]
    oracle = preset.zoo  # random detectors find nobody: use the scenes' own people
    config = settings.run_config(method)

    progress(f"[{method}] building refsd-trt's Anonymizer ({settings.preset})")
    before = rss_bytes()
    anonymizer = Anonymizer.from_preset(settings.preset, config)
    device = anonymizer.device
    ours = RefsdTrtSide(anonymizer)
    model_rss = {ours.name: rss_bytes() - before}
    progress(f"[{method}] building the baseline (diffusers pipelines, ultralytics predictor)")
    before = rss_bytes()
    # The baseline runs with what refsd-trt's method actually uses: its settings and avatar renderer.
    baseline = BaselineSide(preset, config, anonymizer.method.settings, device,
                            getattr(anonymizer.method, "avatars", None))
    model_rss[baseline.name] = rss_bytes() - before

    runs: dict[str, dict[str, SideRun]] = {}
    for w in workloads:
        progress(f"[{method}] {w.name}: {w.images} images, {w.people} people; "
                 f"{settings.warmup} warm-up + {settings.repeats} timed rounds, sides alternating")
        runs[w.name] = run_sides([ours, baseline], w, settings.warmup, settings.repeats, work / method / w.name,
                                 oracle, device)
    flops = FlopModel(anonymizer.engines) if settings.flops else None
    breakdowns = {w.name: analysis.time_breakdown(runs[w.name][ours.name], flops, peak) for w in workloads}
    sweeps = {}
    if settings.sweep is not None:
        progress(f"[{method}] refsd-trt scaling sweeps")
        sweeps = _sweeps(settings, config, ours)
    return {"engines": _engines(anonymizer), "scaling": sweeps,
            "workloads": {w.name: _workload_report(w, runs[w.name], model_rss, breakdowns[w.name]) for w in workloads}}


def method_targets(method: str, report: dict, crop_batch_size: int) -> list[targets.Target]:
    main = report["workloads"]["synthetic"]
    breakdown = main["refsd-trt"].get("where_the_time_goes", {})
    found = [targets.speedup_target(method, main["comparison"]["speedup_end_to_end"]),
             targets.overhead_target(method, breakdown.get("overhead_fraction_of_engine"))]
    if report["scaling"]:
        found.append(targets.scaling_target(method, report["scaling"]["people_per_image"], crop_batch_size))
    return found


def run_benchmark(settings: BenchSettings, progress: Callable[[str], None] = lambda _: None) -> dict:
    from refsd_trt.api import resolve_device

    preset = PRESETS[settings.preset]
    device = resolve_device(settings.device)
    machine = machine_info(device)
    peak, machine["peak_source"] = device_peak(device) if settings.flops else (None, "not measured (--no-flops)")
    machine["peak_gflops"] = None if peak is None else peak / 1e9
    with tempfile.TemporaryDirectory(prefix="refsd-trt-bench-") as tmp:
        work = Path(tmp)
        workloads = _workloads(settings, work / "inputs")
        methods = {}
        for m in settings.methods:
            methods[m] = run_method(settings, m, workloads, work, progress, peak)
            _release()  # the method's models went out of scope with run_method
    checked = [t for m, r in methods.items() for t in method_targets(m, r, settings.crop_batch_size)]
    machine["load_average_at_end"] = load_average()
    machine["torch_threads_at_end"] = torch.get_num_threads()  # equal to torch_threads: no library changed it
    return {
        "schema": REPORT_SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": asdict(settings),
        "people_source": {"kind": "oracle" if preset.zoo else "detector",
                          "note": (ORACLE_NOTE.format(preset=preset.name) if preset.zoo else DETECTOR_NOTE)},
        "notes": [
            "Stage times are seconds over the whole workload (all images), mean/p50/p90 over the timed repeats.",
            "'other' is time inside anonymize that no stage claims (host copies, the fail-closed check).",
            "The inpaint method's diffusion stage is reported as 'refine' on both sides.",
            ("Ratios are refsd-trt / baseline on medians (below 1: refsd-trt faster); speedup is baseline / "
             "refsd-trt end to end. The sides run in alternating rounds, so shared-machine load hits both."),
            ("FLOPs count convolutions, matrix products and attention (torch's FlopCounterMode), per engine "
             "call at the shapes it ran; a stage's achieved FLOP/s divides by that stage's wall time."),
            ("speedup_ceiling: baseline time / (engine FLOPs at the device's peak + refsd-trt's decode, encode "
             "and avatar time): the speedup with engines at peak and no orchestration."),
        ],
        "methods": methods,
        "targets": [t.to_dict() for t in checked],
        "targets_passed": all(t.passed for t in checked if t.passed is not None),
    }
