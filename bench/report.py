"""The report on disk (``bench.json``) and its short text form for the terminal."""

from __future__ import annotations

import json
from pathlib import Path

from refsd_trt.io.json_safe import json_safe

REPORT_NAME = "bench.json"


def write_report(report: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:9.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_summary(report: dict) -> str:
    lines = []
    for method, data in report["methods"].items():
        for name, w in data["workloads"].items():
            info, ours, base, comp = w["workload"], w["refsd-trt"], w["baseline"], w["comparison"]
            lines.append(f"{method} / {name}: {info['images']} images, {info['people']} people")
            lines.append(f"  {'stage':10} {'refsd-trt ms':>12} {'baseline ms':>12} {'ratio':>6}   (medians)")
            for stage, r in comp["ratio_by_stage"].items():
                lines.append(f"  {stage:10} {_ms(ours['stages'][stage]['p50']):>12} "
                             f"{_ms(base['stages'][stage]['p50']):>12} {_x(r):>6}")
            lines.append(f"  {'end2end':10} {_ms(ours['end_to_end']['p50']):>12} "
                         f"{_ms(base['end_to_end']['p50']):>12} {_x(comp['ratio_end_to_end']):>6}"
                         f"   speedup {_x(comp['speedup_end_to_end'])}x (CPU time: {_x(comp['speedup_end_to_end_cpu'])}x)")
            if comp.get("speedup_ceiling") is not None:
                lines.append(f"  ceiling {_x(comp['speedup_ceiling'])}x: engines at the device's peak, no orchestration")
            lines.append(f"  people/s {ours['people_per_s']:.2f} vs {base['people_per_s']:.2f}; people match: "
                         f"{w['parity']['people_match']}; detector counts match: {w['parity']['detector_counts_match']}")
            where = ours.get("where_the_time_goes")
            for name, window in (where or {}).get("windows", {}).items():
                fraction = window["overhead_fraction_of_engine"]
                lines.append(f"  {name}: engines {window['engine_s']:.3f} s of {window['wall_s']:.3f} s wall; overhead "
                             + ("n/a (engines not exposed)" if fraction is None else f"{fraction * 100:.1f} % of engine time"))
    for t in report["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["passed"]]
        measured = "-" if t["measured"] is None else f"{t['measured']:.3f}"
        lines.append(f"{verdict} {t['method']:8} {t['name']}: {measured} ({t['description']})")
    return "\n".join(lines)
