"""What an evaluation run writes: ``eval.json`` (everything), ``eval.md`` (the table), ``eval.png``
(one bar chart per metric, a bar per method) and ``worst_cases.png`` (per method, the face it left
most identifiable, beside the original).

In ``eval.json`` an infinite PSNR (an untouched background) is the string ``"inf"`` and a figure
with nothing to measure (no faces, no people) is ``null``, so the file stays strict JSON;
``float()`` reads both numbers and ``"inf"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np

from refsd_trt.contact_sheet import save_contact_sheet
from refsd_trt.io import AtomicOutput
from refsd_trt.io.json_safe import json_safe

JSON_NAME, TABLE_NAME, PLOT_NAME, WORST_NAME = "eval.json", "eval.md", "eval.png", "worst_cases.png"

# (key, column title, higher is better for the person in the photo's privacy?) -- the plot's and
# the table's order. None: a utility figure, where higher is better for the data set.
METRICS = (
    ("identity_leak_rate", "identity leak", True),
    ("face_r1", "face R@1", True),
    ("face_map", "face mAP", True),
    ("appearance_r1", "appearance R@1", True),
    ("people_kept", "people kept", None),
    ("pose_oks", "pose OKS", None),
    ("background_psnr", "bg PSNR dB", None),
    ("background_ssim", "bg SSIM", None),
    ("faces_still_detected", "faces detected", None),
)


def write_json(report: Mapping, out_dir: Path) -> Path:
    with AtomicOutput(out_dir / JSON_NAME) as tmp:
        tmp.write_text(json.dumps(json_safe(report, infinity="inf"), indent=2, allow_nan=False) + "\n")
    return out_dir / JSON_NAME


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def table(methods: Mapping[str, Mapping]) -> str:
    """The markdown table: one row per method, the issue's figures as columns."""
    head = ["method", *(title for _, title, _ in METRICS), "faces", "people", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in methods.items():
        label = name if m["anonymizes"] or m["kind"] == "reference" else f"{name} (not an anonymization)"
        cells = [label, *(_cell(m[key]) for key, _, _ in METRICS),
                 str(m["counts"]["faces"]), str(m["counts"]["people"]), f"{m['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(report: Mapping, out_dir: Path) -> Path:
    text = (f"# refsd-trt eval: {len(report['inputs'])} images, {report['date']}\n\n"
            f"{table(report['methods'])}\n\n"
            f"Identity leak, face R@1/mAP, appearance R@1: lower protects better (the originals' row is "
            f"what no anonymization leaves; chance R@1 is {_cell(_chance(report))}). People kept, pose "
            f"OKS, background PSNR/SSIM: higher keeps more for training. Faces detected: a realism proxy "
            f"(a replaced person still has a face). Judges: {', '.join(report['evaluator_models'])}; "
            f"{report['independence']['statement']}. Note: {report['independence']['identity_gate']}.\n")
    with AtomicOutput(out_dir / TABLE_NAME) as tmp:
        tmp.write_text(text)
    return out_dir / TABLE_NAME


def _chance(report: Mapping) -> float:
    return next(iter(report["methods"].values()))["chance"]["face_r1"] if report["methods"] else math.nan


def write_plot(methods: Mapping[str, Mapping], out_dir: Path) -> Path:
    names = list(methods)
    cols = 3
    rows = math.ceil(len(METRICS) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (key, title, privacy) in zip(axes.flat, METRICS):
        values = [float(methods[n][key]) for n in names]
        finite = [v for v in values if math.isfinite(v)]
        top = max(finite, default=1.0)
        # An infinite PSNR is drawn as a full-height hatched bar; nothing to measure, as no bar.
        heights = [top * 1.1 if math.isinf(v) else (0.0 if math.isnan(v) else v) for v in values]
        bars = ax.bar(range(len(names)), heights, color="tab:red" if privacy else "tab:blue")
        for bar, value in zip(bars, values):
            if math.isinf(value):
                bar.set_hatch("//")
            ax.annotate(_cell(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_title(title + (" (lower: more private)" if privacy else " (higher: more kept)"), fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    for ax in axes.flat[len(METRICS):]:
        ax.axis("off")
    fig.tight_layout()
    path = out_dir / PLOT_NAME
    with AtomicOutput(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_worst_cases(cases: Sequence[tuple[str, str, np.ndarray, np.ndarray, float]], out_dir: Path) -> Path | None:
    """``cases``: (method, image name, original crop, output crop, distance) for each method."""
    if not cases:
        return None
    rows = [[(f"{method}: {name}", original), (f"output, face distance {distance:.2f}", output)]
            for method, name, original, output, distance in cases]
    return save_contact_sheet(rows, out_dir / WORST_NAME, height=200)
