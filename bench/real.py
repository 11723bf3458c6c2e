"""``make bench-real``: the real-shape diffusion benchmark, then the lite preset's throughput.

    python -m refsd_trt.bench.real [--quick] [-o bench/figures/real-cpu.json]

Prints each part's table, writes the JSON report, and ends with exactly four lines, one figure
each, refsd-trt over the other side (above 1: refsd-trt is faster):

    unet_step_speedup <the lower of the two UNets' (SD 1.5 inpainting 512², SDXL base 1024²)>
    vae_decode_speedup <the lower of the two VAE decodes' (SD 1.5 512², SDXL fp16-fix 1024²)>
    lite_images_per_s <warm lite images/s>
    lite_vs_deface <lite images/s / deface images/s, same images, same run>

Full size needs the full-size lock (the Makefile takes it); ``--quick`` runs the narrowed models at
small sizes and lite's quick set: a check of the machinery, not figures to report.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from refsd_trt.bench import real_shapes, targets
from refsd_trt.bench.machine import machine_info
from refsd_trt.engine.cpu_features import cpu_features

DEFAULT_OUTPUT = Path(__file__).with_name("figures") / "real-cpu.json"
UNETS = ("SD 1.5 inpainting UNet step", "SDXL base UNet step")
VAE_DECODES = ("SD 1.5 VAE decode", "SDXL VAE (fp16-fix) decode")


def lite_measure(quick: bool) -> dict:
    """The lite preset's warm images/s against deface (``bench/lite_throughput.py``)."""
    from refsd_trt.bench import lite_throughput

    return lite_throughput.measure(quick=quick)


def headline(real: dict, lite: dict) -> dict[str, float]:
    """The four closing figures: for the diffusion models the lower of each pair, so neither hides
    behind the other."""
    speedups = {row["case"]["name"]: row["speedup"] for row in real["rows"]}
    return {"unet_step_speedup": min(speedups[name] for name in UNETS),
            "vae_decode_speedup": min(speedups[name] for name in VAE_DECODES),
            "lite_images_per_s": lite["lite_images_per_s"], "lite_vs_deface": lite["lite_vs_deface"]}


def closing_lines(figures: dict[str, float]) -> str:
    return "\n".join(f"{name} {value:.3g}" for name, value in figures.items())


def main(argv: Sequence[str] | None = None, lite: Callable[[bool], dict] = lite_measure) -> int:
    parser = argparse.ArgumentParser(prog="python -m refsd_trt.bench.real", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="narrowed models, small sizes: a machinery check")
    parser.add_argument("--rounds", type=int, help="alternating rounds per model (default 3; quick 2)")
    parser.add_argument("-o", "--output", type=Path, help=f"JSON report (default {DEFAULT_OUTPUT}; quick: none)")
    parser.add_argument("--real-from", type=Path, metavar="REPORT",
                        help="take the real-shape part from an earlier report instead of measuring it again")
    parser.add_argument("--resume", action="store_true",
                        help="keep the cases an interrupted run already wrote to the report; measure the rest")
    args = parser.parse_args(argv)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if args.real_from is not None:
        report = json.loads(args.real_from.read_text())
    else:
        report = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  "machine": machine_info(torch.device("cpu")), "cpu_features": cpu_features().summary()}
        partial = lambda rows: _write({**report, "real_shapes_so_far": rows}, output)
        earlier = (json.loads(output.read_text()).get("real_shapes_so_far", {}).get("rows", [])
                   if args.resume and output is not None and output.is_file() else [])
        report["real_shapes"] = real_shapes.measure(quick=args.quick, rounds=args.rounds, measured=partial,
                                                    earlier=earlier, progress=lambda m: print(m, file=sys.stderr))
        _write(report, output)  # the slow part is kept even if the lite part fails
    print(real_shapes.table(report["real_shapes"]))
    lite_result = lite(args.quick)
    print(lite_result["table"])
    figures = headline(report["real_shapes"], lite_result)
    checked = targets.real_shape_targets(figures)
    print("\n".join(f"target {t.name}: {t.description}: {'met' if t.passed else 'NOT met'} ({t.measured:.3g})"
                     for t in checked))
    report |= {"headline": figures, "targets": [t.to_dict() for t in checked],
               "lite": {k: v for k, v in lite_result.items() if k != "table"}}
    _write(report, output)
    print(closing_lines(figures))
    return 0


def _write(report: dict, output: Path | None) -> None:
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"report: {output}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
