"""Warm throughput of the ``lite`` preset against the peer tool ``deface``, on the same images in one run.

    python -m refsd_trt.bench.lite_throughput              # writes bench/figures/lite-cpu.json
    python -m refsd_trt.bench.lite_throughput --quick      # one small image, one round: a smoke check
    python -m refsd_trt.bench.lite_throughput --lite-only  # without deface: to compare two lite versions

What each side does per image, images already decoded in memory (no file I/O on either side):
- **lite**: ``Anonymizer.from_preset("lite")`` called on one image: detection, removal, avatar fit and
  render, merge, the fail-closed checks and the identity gate: every person replaced.
- **lite_batched**: the same anonymizer called on batches of ``RunConfig.batch_size`` images (4: the
  5 sample photos as a batch of 4 and one of 1), as the CLI calls it on a folder: detection and the
  avatar fit then take the batch's images and people together.
- **deface** (1.5.0, as its CLI runs an image): its CenterFace model loaded once
  (``CenterFace(in_shape=None, backend="auto")``), then ``centerface(frame, threshold=0.2)`` and
  ``anonymize_frame`` with the CLI's defaults (blur, ellipse, mask scale 1.3). **It blurs faces only**:
  bodies, clothes and hair stay, so it does far less than lite and protects far less.

The sides are built, then run once untimed (warm-up), then timed in ``rounds`` rounds that alternate
their order (reversed every other round), so load from other processes on a shared machine falls on
all. Figures are medians over rounds; ``lite_vs_deface`` is the median of the per-round ratios of images/s (> 1: lite
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


@dataclass(frozen=True)
class Side:
    """One side of the comparison: a call on a batch of images, returning the seconds of each of its
    stages over the batch, and how many images it takes at a time."""

    call: Callable[[Sequence[np.ndarray]], dict[str, float]]
    batch_size: int = 1


def lite_sides() -> dict[str, Side]:
    """lite one image at a time and in the CLI's batches, one anonymizer for both."""
    from refsd_trt.api import Anonymizer
    from refsd_trt.config import RunConfig

    anonymizer = Anonymizer.from_preset("lite")

    def run(images: Sequence[np.ndarray]) -> dict[str, float]:
        # A batch shares one stage timer: its last image's record holds the whole batch's stages.
        return anonymizer(list(images))[-1].timings

    return {"lite": Side(run), "lite_batched": Side(run, RunConfig().batch_size)}


def deface_side() -> Side:
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    centerface = CenterFace(in_shape=None, backend="auto")

    def run(images: Sequence[np.ndarray]) -> dict[str, float]:
        (image,) = images
        frame = image.copy()  # deface blurs in place
        start = time.perf_counter()
        dets, _ = centerface(frame, threshold=DEFACE_THRESHOLD)
        detected = time.perf_counter()
        anonymize_frame(dets, frame, mask_scale=DEFACE_MASK_SCALE, replacewith="blur", ellipse=True,
                        draw_scores=False, replaceimg=None, mosaicsize=20)
        return {"detect": detected - start, "blur": time.perf_counter() - detected}

    return Side(run)


def _timed(side: Side, images: Sequence[np.ndarray]) -> dict:
    """One pass over ``images`` in the side's batches: wall and CPU seconds per image, and stage
    seconds summed."""
    stages: dict[str, float] = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for begin in range(0, len(images), side.batch_size):
        for stage, seconds in side.call(images[begin:begin + side.batch_size]).items():
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


def measure(quick: bool = False, rounds: int | None = None, deface: bool = True) -> dict:
    """Warm lite (one image at a time and batched) vs deface on the sample photos and a 1080p case
    (``quick``: one 256² image, one round; ``deface`` False: the lite sides alone). Returns the figures
    (see the module docstring); the ``lite_*`` and ``lite_batched_*`` headline figures and
    ``lite_vs_deface`` (None without deface) are those of the sample photos (the quick image with
    ``quick``)."""
    rounds = rounds or (1 if quick else 5)
    loads = [load_average()]
    sides = {**lite_sides(), **({"deface": deface_side()} if deface else {})}
    loads.append(load_average())
    results = {}
    for work in workloads(quick):
        for side in sides.values():  # warm-up, untimed: first-call allocations, caches, lazy builds
            _timed(side, work.images)
        passes: dict[str, list[dict]] = {name: [] for name in sides}
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for name in order:
                passes[name].append(_timed(sides[name], work.images))
        results[work.name] = {
            "what": work.what, "images": len(work.images),
            "sizes": sorted({f"{im.shape[1]}x{im.shape[0]}" for im in work.images}),
            **{name: _median_pass(p) for name, p in passes.items()},
        }
        if deface:
            ratios = [d["wall_s"] / li["wall_s"] for li, d in zip(passes["lite"], passes["deface"])]
            results[work.name].update(lite_vs_deface=statistics.median(ratios), lite_vs_deface_per_round=ratios)
        loads.append(load_average())
    headline = results["quick" if quick else "samples"]
    figures = {
        **{f"{side}_{key}": headline[side][key] for side in ("lite", "lite_batched")
           for key in ("images_per_s", "cpu_s_per_image", "wall_s_per_image", "stages_s_per_image")},
        "lite_vs_deface": headline.get("lite_vs_deface"),
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
             f"{'workload':<10} {'side':<12} {'img/s':>7} {'wall s/img':>11} {'CPU s/img':>10}  stages s/img"]
    for name, work in figures["workloads"].items():
        for side in ("lite", "lite_batched", "deface"):
            if side not in work:
                continue
            s = work[side]
            stages = " ".join(f"{k} {v:.3f}" for k, v in s["stages_s_per_image"].items())
            lines.append(f"{name:<10} {side:<12} {s['images_per_s']:>7.2f} {s['wall_s_per_image']:>11.3f} "
                         f"{s['cpu_s_per_image']:>10.3f}  {stages}")
        if "lite_vs_deface" in work:
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
    parser.add_argument("--lite-only", action="store_true", help="the lite sides alone, without deface")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help=f"where to write the JSON (default {FIGURES}; --quick writes none unless given)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    figures = measure(quick=args.quick, rounds=args.rounds, deface=not args.lite_only)
    print(figures["table"])
    out = args.output or (None if args.quick else FIGURES)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {out}")
    for key in ("lite_images_per_s", "lite_batched_images_per_s", "lite_vs_deface"):
        if figures[key] is not None:
            print(f"{key} {figures[key]:.3f}")


if __name__ == "__main__":
    main()
