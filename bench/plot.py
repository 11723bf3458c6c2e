"""``bench.png``: per method, the stage times of both sides, and refsd-trt's scaling curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np

PLOT_NAME = "bench.png"
SWEEPS = (  # scaling key, x field, y field, title
    ("people_per_image", "people_per_image", "seconds_per_person", "per person vs people per image"),
    ("crop_batch_size", "crop_batch_size", "seconds_per_person", "per person vs crops per UNet call"),
    ("image_size", "size", "seconds_per_image", "per image vs image size (px)"),
)


def _stage_bars(ax, method: str, workload: dict) -> None:
    stages = list(workload["comparison"]["ratio_by_stage"])
    x = np.arange(len(stages))
    for offset, side in ((-0.2, "refsd-trt"), (0.2, "baseline")):
        ms = [workload[side]["stages"][s]["p50"] * 1e3 for s in stages]
        ax.bar(x + offset, ms, width=0.4, label=side)
    ax.set_xticks(x, stages, rotation=45, ha="right")
    ax.set_ylabel("ms over the workload (median)")
    speedup = workload["comparison"]["speedup_end_to_end"]
    info = workload["workload"]
    ax.set_title(f"{method}: {info['images']} img × {info['people']} people, "
                 f"speedup {speedup:.2f}×" if speedup else method)
    ax.legend()


def write_plot(report: dict, folder: Path) -> Path:
    methods = report["methods"]
    fig, axes = plt.subplots(len(methods), 1 + len(SWEEPS), figsize=(5 * (1 + len(SWEEPS)), 4 * len(methods)),
                             squeeze=False)
    for row, (method, data) in zip(axes, methods.items()):
        _stage_bars(row[0], method, data["workloads"]["synthetic"])
        for ax, (key, x_field, y_field, title) in zip(row[1:], SWEEPS):
            points = data["scaling"].get(key, [])
            if points:
                ax.plot([p[x_field] for p in points], [p[y_field] * 1e3 for p in points], marker="o")
                ax.set_xscale("log", base=2)
            ax.set_title(f"{method}: {title}")
            ax.set_ylabel("ms")
    fig.tight_layout()
    path = folder / PLOT_NAME
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
