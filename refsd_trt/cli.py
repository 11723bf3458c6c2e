"""The ``refsd-trt`` command: one sub-command per job, each defined beside the code it runs."""

from __future__ import annotations

import argparse
import json
import logging
import sys


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


def build_parser() -> argparse.ArgumentParser:
    from refsd_trt import __version__

    parser = argparse.ArgumentParser(prog="refsd-trt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"refsd-trt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="versions, available backends, and which presets can run here")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(func=_doctor)

    zoo = sub.add_parser("zoo", help="build (or find cached) the tiny random model zoo and print its folders")
    zoo.add_argument("names", nargs="*", help="entries to build (default: all)")
    zoo.set_defaults(func=_zoo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
