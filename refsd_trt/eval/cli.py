"""``refsd-trt eval``: how private and how useful each method's outputs are, measured with models
the methods never use. Without inputs it runs on the photos with people that ship inside installed
packages. Exit code 0: everything was evaluated; 1: some input or method failed (each named on its
own line, the rest was evaluated); 2: the evaluation could not run (bad usage, a missing model)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _given(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER, got {text!r}")
    return name, Path(folder)


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="privacy, utility and realism of each method, by independent models",
                              description=__doc__)
    p.add_argument("inputs", nargs="*", help="original images, folders or globs, or video files (judged per frame "
                                             "and over time; default: the packaged photos)")
    p.add_argument("-o", "--output", default="eval-out", help="report folder (default: eval-out)")
    p.add_argument("--methods", help="comma-separated presets and baselines to run (default: every preset that "
                                     "can run here and every baseline; 'none' for only --anonymized)")
    p.add_argument("--anonymized", type=_given, action="append", default=[], metavar="NAME=FOLDER",
                   help="outputs made elsewhere, at each original's relative path (repeatable)")
    p.add_argument("--config", help="TOML or YAML run settings (seed, dilate_px, conf, backend, batch_size)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from refsd_trt.config import RunConfig, load_config
    from refsd_trt.eval.evaluate import EvalError, evaluate
    from refsd_trt.eval.independence import NotIndependent
    from refsd_trt.eval.models import EvalModelMissing
    from refsd_trt.eval.report import table
    from refsd_trt.io.formats import MediaKind, media_kind
    from refsd_trt.samples import EVAL_PHOTOS, sample_image_paths

    inputs = args.inputs or [str(p) for p in sample_image_paths(EVAL_PHOTOS)]
    names = None if args.methods is None else [n for n in args.methods.split(",") if n and n != "none"]
    videos = [Path(i) for i in inputs if media_kind(i) is MediaKind.VIDEO and Path(i).is_file()]
    if videos:  # judged per frame and over time (refsd_trt.eval.video); images, if any, as below
        from refsd_trt.eval.video import evaluate_videos, video_table

        try:
            config = load_config(args.config) if args.config else RunConfig()
            report = evaluate_videos(videos, Path(args.output), names, dict(args.anonymized), config)
        except (EvalModelMissing, ImportError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(video_table(report))
        print(f"report: {Path(args.output).resolve()}/eval-video.json")
        inputs = [i for i in inputs if Path(i) not in videos]
        if not inputs:
            return 1 if any("error" in r for m in report["methods"].values() for r in m.values()) else 0
    try:
        config = load_config(args.config) if args.config else RunConfig()
        data = evaluate(inputs, Path(args.output), names, dict(args.anonymized), config)
    except (EvalError, EvalModelMissing, NotIndependent, ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(data["methods"]))
    print(f"report: {Path(args.output).resolve()}/eval.json, eval.md, eval.png, worst_cases.png")
    failed = data["errors"] or any(m["failures"] for m in data["methods"].values())
    return 1 if failed else 0
