"""``refsd-trt bench``: run the benchmark, write ``bench.json`` and ``bench.png`` to ``-o``, print a
summary. Exit code 0 when the run completed (with ``--strict``: and every target it measured
passed, else 1); 2 when the two sides processed different people counts (no valid comparison)."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from refsd_trt.bench.scaling import SweepSettings

# What --quick changes (CI smoke: seconds, not minutes); flags given explicitly still win.
QUICK = {"images": 1, "people": 2, "repeats": 1, "warmup": 0, "steps": 2, "size": (256, 256), "batch_size": 2,
         "crop_batch_size": 2, "samples": False}
QUICK_SWEEP = SweepSettings(people=(1, 2), crop_batch_sizes=(1, 2), batch_images=1, batch_people=2, sizes=(256,),
                            size_people=1, repeats=1)
METHODS = {"inpaint": ("inpaint",), "refsd": ("refsd",), "both": ("inpaint", "refsd")}


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 64:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH (at least 64), got {text!r}")
    return (parts[0], parts[-1])


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="time refsd-trt against a diffusers + ultralytics baseline; JSON + PNG report",
        description=__doc__)
    p.add_argument("--preset", default="tiny", help="preset to benchmark (default: tiny, the random zoo)")
    p.add_argument("--method", choices=list(METHODS), default="both")
    p.add_argument("--images", type=int, help="synthetic scenes (default 8)")
    p.add_argument("--people", type=int, help="people pasted into each scene (default 4)")
    p.add_argument("--size", type=_size, help="scene size, e.g. 512 or 480x640 (default 512)")
    p.add_argument("--repeats", type=int, help="timed runs (default 3)")
    p.add_argument("--warmup", type=int, help="untimed runs first (default 1)")
    p.add_argument("--steps", type=int, help="diffusion steps on both sides (default 4)")
    p.add_argument("--batch-size", type=int, help="images per refsd-trt Anonymizer call (default 8)")
    p.add_argument("--crop-batch-size", type=int, help="person crops per UNet call (default 4)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--backend", choices=["auto", "torch", "onnxruntime", "tensorrt"])
    p.add_argument("--no-samples", dest="samples", action="store_false", default=None,
                   help="skip the packaged sample photos")
    p.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the scaling sweeps")
    p.add_argument("--no-flops", dest="flops", action="store_false", default=None, help="skip the FLOP model")
    p.add_argument("--quick", action="store_true", help="CI smoke: 1 image x 2 people, 1 repeat, 2 steps, 256 px")
    p.add_argument("--strict", action="store_true", help="exit 1 when a performance target fails")
    p.add_argument("-o", "--out", type=Path, default=Path("bench/results"), help="report folder")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    from refsd_trt.bench.run import BenchSettings

    chosen = {"preset": args.preset, "methods": METHODS[args.method]}
    if args.quick:
        chosen.update(QUICK, sweep=QUICK_SWEEP)
    if not args.sweep:
        chosen["sweep"] = None
    for f in fields(BenchSettings):
        value = getattr(args, f.name, None)
        if value is not None and f.name not in ("preset", "methods", "sweep"):
            chosen[f.name] = value
    return replace(BenchSettings(), **chosen)


def _quiet_loading() -> None:
    """Model loading draws progress bars per component, and diffusers' pipelines warn on every call
    about VAE dtypes; the bench prints its own progress lines."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run(args: argparse.Namespace) -> int:
    from refsd_trt.bench.plot import write_plot
    from refsd_trt.bench.report import format_summary, write_report
    from refsd_trt.bench.run import run_benchmark

    settings = settings_from_args(args)
    _quiet_loading()
    report = run_benchmark(settings, progress=lambda line: print(line, flush=True))
    json_path = write_report(report, args.out)
    png_path = write_plot(report, args.out)
    print(format_summary(report))
    print(f"report: {json_path}\nplot:   {png_path}")
    counts_ok = all(w["parity"]["people_match"] for m in report["methods"].values() for w in m["workloads"].values())
    if not counts_ok:
        return 2
    return 1 if args.strict and not report["targets_passed"] else 0
