"""From timed runs to the numbers the report shows: per-stage summaries, throughput, where the time
goes (engine time, orchestration overhead, FLOP/s per stage), refsd-trt/baseline ratios and the
people-count parity checks."""

from __future__ import annotations

import statistics

from refsd_trt.bench.flops import FlopModel, Throughput
from refsd_trt.bench.harness import SideRun, Workload
from refsd_trt.bench.sides import OTHER, STAGES
from refsd_trt.bench.stats import ratio, speedup, summary

# Stages that are compute by design but run no Engine: the avatar's own torch code (body model,
# fitting optimiser, rasteriser). Their time is neither engine time nor orchestration.
NON_ENGINE_STAGES = ("fit", "render")
# Stages whose time does not shrink with faster engines or leaner orchestration.
FIXED_STAGES = ("decode", "encode", *NON_ENGINE_STAGES)
# Which stage an engine works for, by a word in the name the method gives it (first match wins).
ROLE_STAGES = (("detector", "detect"), ("pose", "detect"), ("remov", "remove"), ("refine", "refine"),
               ("inpaint", "refine"))


def stage_of(engine: str) -> str:
    return next((stage for word, stage in ROLE_STAGES if word in engine), OTHER)


def stage_names(runs: list[SideRun]) -> list[str]:
    """Canonical stages in pipeline order, then any other name a side reported."""
    seen = {s for run in runs for r in run.repeats for s in r.stages}
    return [s for s in STAGES if s in seen] + sorted(seen - set(STAGES) - {OTHER}) + ([OTHER] if OTHER in seen else [])


def _mean(values) -> float:
    return statistics.fmean(values)


def side_summary(run: SideRun, workload: Workload, stages: list[str]) -> dict:
    wall = summary([r.wall for r in run.repeats])
    return {
        "stages": {s: summary([r.stages.get(s, 0.0) for r in run.repeats]) for s in stages},
        "end_to_end": wall,
        "end_to_end_cpu": summary([r.cpu for r in run.repeats]),
        "images_per_s": workload.images / wall["p50"],  # medians, as the ratios
        "people_per_s": workload.people / wall["p50"],
        "memory": run.memory.to_dict(),
        "people": run.people,
        "detected": run.detected,
    }


def engine_seconds(run: SideRun) -> dict[str, float]:
    """Mean seconds per round in each engine."""
    out: dict[str, float] = {}
    for r in run.repeats:
        for c in r.calls:
            out[c.engine] = out.get(c.engine, 0.0) + c.seconds / len(run.repeats)
    return out


def _window(wall: float, engine: float, compute: float) -> dict:
    overhead = wall - engine - compute
    return {"wall_s": wall, "engine_s": engine, "non_engine_compute_s": compute, "overhead_s": overhead,
            "overhead_fraction_of_engine": overhead / engine if engine > 0 else None}


def time_breakdown(run: SideRun, flops: FlopModel | None, peak: float | None) -> dict:
    """Engine time against the wall time around it, in two windows: ``detect`` (letterbox,
    selection, mask decoding around the detector engines) and ``anonymize`` (crops, batching,
    prompts, merging around the diffusion engines). What is neither engine time nor the avatar's
    own compute is orchestration overhead. A window whose engines the pipeline does not expose
    (no calls recorded) has no overhead fraction."""
    n = len(run.repeats)
    mean = lambda f: sum(f(r) for r in run.repeats) / n
    detect = _window(mean(lambda r: r.stages.get("detect", 0.0)),
                     mean(lambda r: sum(c.seconds for c in r.calls[:r.detect_calls])), 0.0)
    anonymize = _window(mean(lambda r: r.pipeline - r.stages.get("detect", 0.0)),
                        mean(lambda r: sum(c.seconds for c in r.calls[r.detect_calls:])),
                        mean(lambda r: sum(r.stages.get(s, 0.0) for s in NON_ENGINE_STAGES)))
    by_engine = engine_seconds(run)
    calls = run.repeats[-1].calls  # every repeat runs the same calls at the same shapes
    out = {
        "overhead_fraction_of_engine": anonymize["overhead_fraction_of_engine"],
        "windows": {"detect": detect, "anonymize": anonymize},
        "non_engine_stages": list(NON_ENGINE_STAGES),
        "engine_s_by_engine": by_engine,
        "engine_calls": {name: sum(1 for c in calls if c.engine == name) for name in by_engine},
    }
    if flops is not None:
        out["flops"] = flop_breakdown(run, flops, peak)
    return out


def flop_breakdown(run: SideRun, flops: FlopModel, peak: float | None) -> dict:
    """FLOPs per stage (engines attributed by ``stage_of``) over that stage's wall time, and over
    the engines' own time."""
    per_engine = flops.flops_by_engine(run.repeats[-1].calls)
    per_stage: dict[str, int] = {}
    for name, count in per_engine.items():
        per_stage[stage_of(name)] = per_stage.get(stage_of(name), 0) + count
    engine_time = engine_seconds(run)
    stage_time = {s: _mean([r.stages.get(s, 0.0) for r in run.repeats]) for s in per_stage}
    return {
        "by_stage": {s: Throughput(n, stage_time[s], peak).to_dict() for s, n in per_stage.items()},
        "by_engine": {e: Throughput(n, engine_time[e], peak).to_dict() for e, n in per_engine.items()},
        "engines_total": Throughput(sum(per_engine.values()), sum(engine_time.values()), peak).to_dict(),
        "peak_gflops": None if peak is None else peak / 1e9,
    }


def comparison(ours: dict, baseline: dict, stages: list[str]) -> dict:
    """refsd-trt / baseline per stage and end to end (below 1: refsd-trt is faster), on medians:
    on a shared machine a few runs slowed by someone else's load must not decide the ratio."""
    def median(side: dict, stage: str) -> float | None:
        s = side["stages"].get(stage)
        return s["p50"] if s and s["p50"] > 0 else None

    ours_e2e, base_e2e = ours["end_to_end"]["p50"], baseline["end_to_end"]["p50"]
    return {
        "statistic": "p50",
        "ratio_by_stage": {s: ratio(median(ours, s), median(baseline, s)) for s in stages},
        "ratio_end_to_end": ratio(ours_e2e, base_e2e),
        "speedup_end_to_end": speedup(ours_e2e, base_e2e),
        "speedup_end_to_end_cpu": speedup(ours["end_to_end_cpu"]["p50"], baseline["end_to_end_cpu"]["p50"]),
        "speedup_ceiling": speedup_ceiling(ours, base_e2e),
    }


def speedup_ceiling(ours: dict, baseline_e2e: float) -> float | None:
    """The speedup refsd-trt would reach if every engine ran at the device's peak and orchestration
    cost nothing, its other stages (decode, encode, avatar compute) taking what they took: the
    bound that a speedup target has to fit under on this machine with these FLOPs."""
    flops = ours.get("where_the_time_goes", {}).get("flops")
    if not flops or not flops["peak_gflops"]:
        return None
    fixed = sum(ours["stages"][s]["p50"] for s in FIXED_STAGES if s in ours["stages"])
    return speedup(flops["engines_total"]["gflop"] / flops["peak_gflops"] + fixed, baseline_e2e)


def parity(ours: SideRun, baseline: SideRun, workload: Workload) -> dict:
    expected = [s.count for s in workload.scenes]
    return {
        "people_expected": expected,
        "people_refsd_trt": ours.people,
        "people_baseline": baseline.people,
        "people_match": ours.people == baseline.people == expected,
        "detector_refsd_trt": ours.detected,
        "detector_baseline": baseline.detected,
        "detector_counts_match": ours.detected == baseline.detected,
    }
