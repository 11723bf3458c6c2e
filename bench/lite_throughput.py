"""Warm throughput of the ``lite`` preset against the peer tool ``deface``, on the same images in one run.

    python -m refsd_trt.bench.lite_throughput            # writes bench/figures/lite-cpu.json
    python -m refsd_trt.bench.lite_throughput --quick    # one small image, one round: a smoke check

What each side does per image, images already decoded in memory (no file I/O on either side):
- **lite**: ``Anonymizer.from_preset("lite")`` called on one image: detection, removal, avatar fit and
  render, merge, the fail-closed checks and the identity gate: every person replaced.
- **deface** (1.5.0, as its CLI runs an image): its CenterFace model loaded once
  (``CenterFace(in_shape=None, backend="auto")``), then ``centerface(frame, threshold=0.2)`` and
  ``anonymize_frame`` with the CLI's defaults (blur, ellipse, mask scale 1.3). **It blurs faces only**:
  bodies, clothes and hair stay, so it does far less than lite and protects far less.

Both sides are built, then run once untimed (warm-up), then timed in ``rounds`` rounds that alternate
which side goes first, so load from other processes on a shared machine falls on both. Figures are
medians over rounds; ``lite_vs_deface`` is the median of the per-round ratios of images/s (> 1: lite
is faster). CPU time (this process, all threads) is reported beside wall time.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from refsd_trt.bench.machine import load_average, machine_info

FIGURES = Path(__file__).resolve().parent / "figures" / "lite-cpu.json"
HD = (1080, 1920)  # (height, width) of the 1080p case
DEFACE_THRESHOLD, DEFACE_MASK_SCALE = 0.2, 1.3  # deface's CLI defaults (--thresh, --mask-scale)


@dataclass(frozen=True)
class Workload:
    name: str
    what: str
    images: list[np.ndarray]  # HxWx3 uint8 RGB


def workloads(quick: bool) -> list[Workload]:
    from PIL import Image

    from refsd_trt.samples import EVAL_PHOTOS, sample_image_paths

    paths = sample_image_paths(("astronaut",) if quick else EVAL_PHOTOS)
    if not paths:
        raise FileNotFoundError("no packaged sample photos found (ultralytics, scikit-image, matplotlib)")
    photos = {p.stem: np.asarray(Image.open(p).convert("RGB")) for p in paths}
    if quick:
        small = cv2.resize(photos["astronaut"], (256, 256), interpolation=cv2.INTER_AREA)
        return [Workload("quick", "astronaut downscaled to 256x256", [small])]
    zidane = photos["zidane"]  # 1280x720, 16:9: an exact 1.5x upscale is 1920x1080
    hd = cv2.resize(zidane, HD[::-1], interpolation=cv2.INTER_CUBIC)
    return [
        Workload("samples", f"the {len(photos)} packaged photos ({', '.join(photos)}) at their own sizes",
                 list(photos.values())),
        Workload("1080p", "zidane (1280x720, two people) upscaled 1.5x to 1920x1080 (bicubic)", [hd]),
    ]


def lite_side() -> Callable[[np.ndarray], dict[str, float]]:
    from refsd_trt.api import Anonymizer

    anonymizer = Anonymizer.from_preset("lite")

    def run(image: np.ndarray) -> dict[str, float]:
        return anonymizer([image])[0].timings

    return run


def deface_side() -> Callable[[np.ndarray], dict[str, float]]:
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    centerface = CenterFace(in_shape=None, backend="auto")

    def run(image: np.ndarray) -> dict[str, float]:
        frame = image.copy()  # deface blurs in place
        start = time.perf_counter()
        dets, _ = centerface(frame, threshold=DEFACE_THRESHOLD)
        detected = time.perf_counter()
        anonymize_frame(dets, frame, mask_scale=DEFACE_MASK_SCALE, replacewith="blur", ellipse=True,
                        draw_scores=False, replaceimg=None, mosaicsize=20)
        return {"detect": detected - start, "blur": time.perf_counter() - detected}

    return run


def _timed(run: Callable[[np.ndarray], dict[str, float]], images: Sequence[np.ndarray]) -> dict:
    """One pass over ``images``: wall and CPU seconds per image, and stage seconds summed."""
    stages: dict[str, float] = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for image in images:
        for stage, seconds in run(image).items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    n = len(images)
    return {"wall_s": wall / n, "cpu_s": cpu / n, "stages_s": {k: v / n for k, v in stages.items()}}


def _median_pass(passes: list[dict]) -> dict:
    stages = sorted({k for p in passes for k in p["stages_s"]})
    return {
        "images_per_s": 1 / statistics.median(p["wall_s"] for p in passes),
        "wall_s_per_image": statistics.median(p["wall_s"] for p in passes),
        "cpu_s_per_image": statistics.median(p["cpu_s"] for p in passes),
        "stages_s_per_image": {k: statistics.median(p["stages_s"].get(k, 0.0) for p in passes) for k in stages},
        "rounds": len(passes),
    }


def measure(quick: bool = False, rounds: int | None = None) -> dict:
    """Warm lite vs deface on the sample photos and a 1080p case (``quick``: one 256² image, one
    round). Returns the figures (see the module docstring); ``lite_images_per_s`` and
    ``lite_vs_deface`` are those of the sample photos (the quick image with ``quick``)."""
    rounds = rounds or (1 if quick else 5)
    loads = [load_average()]
    sides = {"lite": lite_side(), "deface": deface_side()}
    loads.append(load_average())
    results = {}
    for work in workloads(quick):
        for run in sides.values():  # warm-up, untimed: first-call allocations, caches, lazy builds
            _timed(run, work.images)
        passes: dict[str, list[dict]] = {name: [] for name in sides}
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for name in order:
                passes[name].append(_timed(sides[name], work.images))
        ratios = [d["wall_s"] / li["wall_s"] for li, d in zip(passes["lite"], passes["deface"])]
        results[work.name] = {
            "what": work.what, "images": len(work.images),
            "sizes": sorted({f"{im.shape[1]}x{im.shape[0]}" for im in work.images}),
            **{name: _median_pass(p) for name, p in passes.items()},
            "lite_vs_deface": statistics.median(ratios), "lite_vs_deface_per_round": ratios,
        }
        loads.append(load_average())
    headline = results["quick" if quick else "samples"]
    figures = {
        "lite_images_per_s": headline["lite"]["images_per_s"],
        "lite_vs_deface": headline["lite_vs_deface"],
        "lite_cpu_s_per_image": headline["lite"]["cpu_s_per_image"],
        "lite_wall_s_per_image": headline["lite"]["wall_s_per_image"],
        "lite_stages_s_per_image": headline["lite"]["stages_s_per_image"],
        "workloads": results,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": {**machine_info(_cpu()), "load_average_during": loads},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "caveat": "deface blurs faces only (CenterFace, ellipse blur); lite replaces every detected person "
                  "(detection, removal, avatar, identity gate). Images are in memory on both sides: no decode or encode.",
        "quick": quick,
    }
    figures["table"] = table(figures)
    return figures


def _cpu():
    import torch

    return torch.device("cpu")


def table(figures: dict) -> str:
    lines = ["lite vs deface, warm, images in memory (deface blurs faces only; lite replaces whole people)",
             f"{'workload':<10} {'side':<7} {'img/s':>7} {'wall s/img':>11} {'CPU s/img':>10}  stages s/img"]
    for name, work in figures["workloads"].items():
        for side in ("lite", "deface"):
            s = work[side]
            stages = " ".join(f"{k} {v:.3f}" for k, v in s["stages_s_per_image"].items())
            lines.append(f"{name:<10} {side:<7} {s['images_per_s']:>7.2f} {s['wall_s_per_image']:>11.3f} "
                         f"{s['cpu_s_per_image']:>10.3f}  {stages}")
        lines.append(f"{name:<10} lite/deface images/s: {work['lite_vs_deface']:.3f} "
                     f"(median of {len(work['lite_vs_deface_per_round'])} alternating rounds)")
    machine = figures["machine"]
    lines.append(f"{machine['cpu']}, {machine['cpu_cores']} cores, load average "
                 f"{' -> '.join(f'{la[0]:.1f}' for la in machine['load_average_during'])}, "
                 f"peak RSS {figures['peak_rss_mib']:.0f} MiB, {figures['date']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 256x256 image, one round (smoke check)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per workload (default 5)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help=f"where to write the JSON (default {FIGURES}; --quick writes none unless given)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    figures = measure(quick=args.quick, rounds=args.rounds)
    print(figures["table"])
    out = args.output or (None if args.quick else FIGURES)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {out}")
    print(f"lite_images_per_s {figures['lite_images_per_s']:.3f}")
    print(f"lite_vs_deface {figures['lite_vs_deface']:.3f}")


if __name__ == "__main__":
    main()
