"""The ``refsd-trt`` command: one sub-command per job, each defined beside the code it runs.

Exit codes: 0 everything asked for was done; 1 at least one input failed (each named on its own
line, the rest of the batch was processed); 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _doctor(args: argparse.Namespace) -> int:
    from refsd_trt.doctor import format_report, report

    data = report()
    print(json.dumps(data, indent=2) if args.json else format_report(data))
    return 0


def _zoo(args: argparse.Namespace) -> int:
    from refsd_trt.models import tiny_zoo

    for name in args.names or list(tiny_zoo.ENTRIES):
        print(f"{name}: {tiny_zoo.entry_path(name)}", flush=True)
    return 0


def _run_config(args: argparse.Namespace):
    from refsd_trt.attributes import parse_attributes
    from refsd_trt.config import RunConfig, load_config

    base = load_config(args.config) if args.config else RunConfig()
    return base.merged({
        "preset": args.preset, "method": args.method, "strength": args.strength, "steps": args.steps,
        "prompt": args.prompt, "seed": args.seed, "device": args.device, "backend": args.backend,
        "batch_size": args.batch_size, "crop_batch_size": args.crop_batch_size,
        "attributes": parse_attributes(args.attributes) if args.attributes else None,
    })


def _anonymize(args: argparse.Namespace) -> int:
    from refsd_trt.api import Anonymizer
    from refsd_trt.io import ReadLimits
    from refsd_trt.runner import MANIFEST_NAME, Runner, SetupError

    try:
        config = _run_config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runner = Runner(lambda: Anonymizer.from_preset(config=config), args.output, config.batch_size,
                    resume=args.resume, limits=ReadLimits(max_pixels=config.max_pixels),
                    progress=not args.quiet, config=config.to_dict())
    try:
        summary = runner.run(args.inputs)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    print(f"outputs and {MANIFEST_NAME}: {Path(args.output).resolve()}")
    if runner.loaded and not runner.anonymizer.preset.anonymizes:
        print("note: the tiny preset runs random models; its outputs are NOT anonymized images")
    return summary.exit_code


def _demo(args: argparse.Namespace) -> int:
    from refsd_trt.demo import run_demo

    return run_demo(Path(args.output), preset=args.preset)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML or YAML file of settings (flags override it)")
    parser.add_argument("--preset", choices=None, help="refsd | inpaint | lite | tiny (default: the best one present)")
    parser.add_argument("--method", choices=("refsd", "inpaint"), help="override the preset's method")
    parser.add_argument("--strength", type=float, help="diffusion noise strength βd (default 0.6)")
    parser.add_argument("--steps", type=int, help="diffusion steps")
    parser.add_argument("--prompt", help="prompt template over attribute names, e.g. 'a photo of a {age} {gender}'")
    parser.add_argument("--attributes", help="fixed attributes for every person: age=elderly,gender=woman,...")
    parser.add_argument("--seed", type=int, help="run seed (per-person seeds derive from it; recorded)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "tensorrt"))
    parser.add_argument("--batch-size", type=int, help="images (or video frames) per batch")
    parser.add_argument("--crop-batch-size", type=int, help="person crops per UNet call, 1..8 (default 4)")


def build_parser() -> argparse.ArgumentParser:
    from refsd_trt import __version__
    from refsd_trt.bench.cli import register as register_bench
    from refsd_trt.eval.cli import register as register_eval
    from refsd_trt.export.cli import register as register_export

    parser = argparse.ArgumentParser(prog="refsd-trt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"refsd-trt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    anonymize = sub.add_parser("anonymize", help="replace every person in images, folders, globs and videos")
    anonymize.add_argument("inputs", nargs="+", help="image or video files, folders (recursive) or globs")
    anonymize.add_argument("-o", "--output", required=True, help="output folder (mirrors the input folders)")
    anonymize.add_argument("--resume", action="store_true", help="skip inputs the output's manifest lists as done")
    anonymize.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_run_options(anonymize)
    anonymize.set_defaults(func=_anonymize)

    demo = sub.add_parser("demo", help="anonymize the bundled sample photos and write a sheet of inputs, masks and keypoints, outputs")
    demo.add_argument("-o", "--output", default="demo-out", help="output folder (default: demo-out)")
    demo.add_argument("--preset", default="lite", help="preset to run (default: lite, the offline CPU default)")
    demo.set_defaults(func=_demo)

    doctor = sub.add_parser("doctor", help="versions, available backends, and which presets can run here")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(func=_doctor)

    zoo = sub.add_parser("zoo", help="build (or find cached) the tiny random model zoo and print its folders")
    zoo.add_argument("names", nargs="*", help="entries to build (default: all)")
    zoo.set_defaults(func=_zoo)

    register_export(sub)
    register_bench(sub)
    register_eval(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # which preset runs, and why, is always worth a line
        logging.getLogger("refsd_trt.api").setLevel(logging.INFO)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
