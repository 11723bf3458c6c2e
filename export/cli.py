"""``refsd-trt export`` and ``refsd-trt build``: argparse wiring over ``formats.export`` and
``engine.factory``. Progress goes to stdout here (the library only logs); each artifact's
manifest.json lies beside it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from refsd_trt.export.specs import AxisRange

PRECISION = {"fp32": "float32", "fp16": "float16"}


def register(subparsers) -> None:
    from refsd_trt.export.formats import DEFAULT_OPSET, FORMATS
    from refsd_trt.export.sources import COMPONENTS

    export = subparsers.add_parser(
        "export", help="export model components to ONNX (fp32/fp16) or TensorRT, cached by content",
        description="\n".join(f"  {name:14} {f.description}" for name, f in FORMATS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("model", type=Path, help="checkpoint: diffusers folder, standalone VAE folder, Hugging Face id (from the local cache) or YOLO .pt")
    export.add_argument("-c", "--component", action="append", choices=list(COMPONENTS), required=True,
                        help="component to export (repeatable)")
    export.add_argument("-f", "--format", action="append", choices=list(FORMATS),
                        help="artifact format (repeatable; default onnx and onnx-fp16)")
    export.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    export.add_argument("--no-validate", dest="validate", action="store_false",
                        help="skip the onnxruntime-CPU comparison with torch (large models on small machines)")
    export.add_argument("--profile", type=_axis_range, action="append", default=[], metavar="AXIS=MIN:OPT:MAX",
                        help="TensorRT profile override, e.g. height=512:1024:1024 (repeatable)")
    export.add_argument("--out", type=Path, help="artifact root (default: the refsd-trt cache)")
    export.set_defaults(func=run_export)

    build = subparsers.add_parser(
        "build", help="pick (or force) a backend for a component on this machine and prepare its engine",
        description="With --backend auto, times every backend available here at --shape and records "
                    "the winner in the ONNX artifact's manifest; load_engine(..., backend='auto') reads it.")
    build.add_argument("model", type=Path, help="checkpoint (as for export), or an artifact folder written by export")
    build.add_argument("-c", "--component", action="append", choices=list(COMPONENTS),
                       help="component (repeatable; not needed for an artifact folder)")
    build.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime", "tensorrt"])
    build.add_argument("--device", default="cuda" if _cuda() else "cpu")
    build.add_argument("--precision", default="fp16" if _cuda() else "fp32", choices=list(PRECISION))
    build.add_argument("--shape", type=_axes, default=None, metavar="AXIS=N,...",
                       help="shape to time, e.g. batch=2,height=1024,width=1024 (default: the smallest)")
    build.add_argument("--profile", type=_axis_range, action="append", default=[], metavar="AXIS=MIN:OPT:MAX",
                       help="TensorRT profile override, e.g. height=1024:1024:1024 (repeatable)")
    build.add_argument("--remeasure", action="store_true", help="time again even if a winner is recorded")
    build.add_argument("--out", type=Path, help="artifact root (default: the refsd-trt cache)")
    build.set_defaults(func=run_build)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _axis_range(text: str) -> tuple[str, AxisRange]:
    try:
        name, values = text.split("=")
        low, opt, high = (int(v) for v in values.split(":"))
        return name, AxisRange(low, opt, high)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected AXIS=MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, got {text!r}") from exc


def _axes(text: str) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected AXIS=N[,AXIS=N...], got {text!r}") from exc


def run_export(args) -> int:
    from refsd_trt.export.formats import export

    for component in args.component:
        for fmt in args.format or ["onnx", "onnx-fp16"]:
            artifact = export(args.model, component, fmt, root=args.out, progress=print, opset=args.opset,
                              validate=args.validate, axes=dict(args.profile))
            checked = artifact.manifest.get("validation") or {}
            if checked:
                print(f"  max |onnx - torch| = {json.dumps(checked['max_abs_diff'])} (tolerance {checked['tolerance']} "
                      f"x max(1, |ref|))")
            print(f"  manifest: {artifact.folder / 'manifest.json'}")
    return 0


def run_build(args) -> int:
    from refsd_trt.engine.factory import choose_backend, load_engine

    precision = PRECISION[args.precision]
    for component in args.component or [None]:
        if args.backend == "auto":
            import torch
            from refsd_trt.engine.factory import resolve_source

            ref, name, precision = resolve_source(args.model, component, precision)
            winner = choose_backend(ref, name, torch.device(args.device), precision, args.shape,
                                    profile=dict(args.profile), root=args.out, progress=print,
                                    remeasure=args.remeasure)
            print(f"  auto backend for {name}: {winner}")
        else:
            engine = load_engine(args.model, component, args.backend, args.device, precision,
                                 profile=dict(args.profile), root=args.out, progress=print)
            print(f"  {engine.spec.name}: {engine.backend} ready on {engine.device} ({engine.precision})")
    return 0
