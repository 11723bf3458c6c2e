"""The ``refsd-trt`` command: one sub-command per job, each defined beside the code it runs.

Exit codes: 0 everything asked for was done; 1 at least one input failed (each named on its own
line, the rest of the batch was processed); 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from pathlib import Path


def _doctor(args: argparse.Namespace) -> int:
    if args.gpu_check:
        from refsd_trt.gpu_check import run

        return run(lambda line: print(line, flush=True))
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
    from refsd_trt.presets import PRESETS

    base = load_config(args.config) if args.config else RunConfig()
    config = base.merged({
        "preset": args.preset, "method": args.method, "strength": args.strength, "steps": args.steps,
        "prompt": args.prompt, "seed": args.seed, "device": args.device, "backend": args.backend,
        "precision": args.precision, "memory_budget_gb": args.memory_budget,
        "batch_size": args.batch_size, "crop_batch_size": args.crop_batch_size,
        "keep_metadata": args.keep_metadata, "track_gap_frames": args.track_gap_frames,
        "keep_audio": True if args.keep_audio else None,
        "attributes": parse_attributes(args.attributes) if args.attributes else None,
    })
    # The effective config (the preset's defaults under the file and flags), as the manifest records
    # it; with no preset named, the one chosen later fills the preset settings, and None means any.
    return config.resolved(PRESETS[config.preset]) if config.preset is not None else config


def _anonymize(args: argparse.Namespace) -> int:
    from refsd_trt.api import Anonymizer
    from refsd_trt.io import ReadLimits
    from refsd_trt.runner import MANIFEST_NAME, Runner, SetupError

    try:
        config = _run_config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    common = {"resume": args.resume, "limits": ReadLimits(max_pixels=config.max_pixels), "progress": not args.quiet,
              "config": config.to_dict(), "state": args.state, "publish": args.publish}
    try:
        if args.ray is not None:  # refsd_trt.distributed: the image batches on a Ray Data actor pool
            from refsd_trt.distributed import MISSING_RAY, DistributedRunner, RayOptions, ray_available

            if not ray_available():
                print(f"error: {MISSING_RAY}", file=sys.stderr)
                return 2
            options = RayOptions(address=args.ray or None, actors=args.ray_actors, decode_tasks=args.ray_decode_tasks,
                                 **({"actor_cpus": args.ray_actor_cpus} if args.ray_actor_cpus else {}))
            runner = DistributedRunner(functools.partial(Anonymizer.from_preset, config=config), args.output,
                                       config.batch_size, options=options, preset=config.preset,
                                       device=config.device, **common)
        else:
            runner = Runner(lambda: Anonymizer.from_preset(config=config), args.output, config.batch_size, **common)
    except ValueError as exc:  # --publish with --resume or --state
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = runner.run(args.inputs)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    print(f"outputs and {MANIFEST_NAME}: {Path(args.output).resolve()}")
    if runner.state_path is not None:
        print(f"resume state (private, do not publish it): {runner.state_path.resolve()}")
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
    parser.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "openvino", "tensorrt"))
    parser.add_argument("--precision", choices=("auto", "float32", "float16", "bfloat16"),
                        help="engine precision (default auto: float16 on GPUs, bfloat16 for the diffusion "
                             "models on CPUs with AMX/AVX-512 BF16, float32 elsewhere)")
    parser.add_argument("--memory-budget", type=float, metavar="GB",
                        help="host memory a CPU run's engines may fill; backend auto runs the fastest engine "
                             "that fits (default: 60%% of this machine's memory)")
    parser.add_argument("--batch-size", type=int, help="images (or video frames) per batch")
    parser.add_argument("--crop-batch-size", type=int, help="person crops per UNet call, 1..8 (default 4)")
    parser.add_argument("--keep-metadata", metavar="GROUPS",
                        help="EXIF groups outputs keep, comma-separated: time, gps, camera, or none "
                             "(default: no metadata at all; never thumbnails, serials, MakerNote, XMP)")
    parser.add_argument("--track-gap-frames", type=int, metavar="N",
                        help="videos: a tracked person missed for up to N frames is still removed there "
                             "(default 10; 0: off)")
    parser.add_argument("--keep-audio", action="store_true",
                        help="videos: copy the audio track (default: dropped, it can carry voices and names)")


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
    anonymize.add_argument("--resume", action="store_true",
                           help="skip inputs the private resume state lists as done (same settings, files unchanged)")
    anonymize.add_argument("--state", metavar="PATH",
                           help="private resume state file (default: OUT/.refsd-trt/state.jsonl); "
                                "it holds absolute paths and input hashes: keep it out of what you publish")
    anonymize.add_argument("--publish", action="store_true",
                           help="write no private resume state: OUT holds only what may be published "
                                "(no --resume later)")
    anonymize.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    anonymize.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                           help="run the images on a Ray cluster (ADDRESS: auto, host:6379, ray://host:10001; "
                                "none: RAY_ADDRESS or a local instance); needs the distributed extra")
    anonymize.add_argument("--ray-actors", type=int, metavar="N",
                           help="with --ray: anonymizers in the pool (default: one per GPU; CPU presets: CPUs - 1)")
    anonymize.add_argument("--ray-actor-cpus", type=float, metavar="X", help="with --ray: CPUs per actor (default 1)")
    anonymize.add_argument("--ray-decode-tasks", type=int, metavar="N",
                           help="with --ray: image batches decoded at once on CPU tasks (default: twice the actors)")
    _add_run_options(anonymize)
    anonymize.set_defaults(func=_anonymize)

    demo = sub.add_parser("demo", help="anonymize the bundled sample photos and write a sheet of inputs, masks and keypoints, outputs")
    demo.add_argument("-o", "--output", default="demo-out", help="output folder (default: demo-out)")
    demo.add_argument("--preset", default="lite", help="preset to run (default: lite, the offline CPU default)")
    demo.set_defaults(func=_demo)

    doctor = sub.add_parser("doctor", help="versions, available backends, and which presets can run here")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument("--gpu-check", action="store_true",
                        help="run the GPU paths layer by layer (OK/FAIL per line, stops at the first broken one; "
                             "exit 1 on a failure, 2 without a GPU)")
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
    code = args.func(args)
    from refsd_trt.stages import abandoned_workers

    if abandoned_workers():  # a stage thread left past its limit: a normal exit could abort in teardown
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
