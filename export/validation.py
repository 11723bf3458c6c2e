"""Compare an exported model on onnxruntime-CPU with the torch fp32 reference, at a stated tolerance.

The tolerance scales with the output's magnitude: ``max |onnx - torch| <= tol * max(1, max |torch|)``
(YOLO boxes are in pixels, latents are about 1), with ``tol`` 1e-4 for fp32 files and 1e-2 for fp16
files (fp16 has about 3 significant digits; measured errors on the tiny zoo are 1e-3..7e-3 of scale).
The reference inputs and outputs are stored with the fp32 artifact, so the fp16 and TensorRT
variants compare against the very same torch outputs without reloading the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from refsd_trt.export.specs import ModelSpec

TOLERANCE = {"float32": 1e-4, "float16": 1e-2}
REFERENCE_FILE = "reference.safetensors"


class ValidationError(AssertionError):
    pass


def validation_axes(spec: ModelSpec) -> dict[str, int]:
    """The smallest shape of the profile: cheap on a CPU, still exercises every dynamic axis."""
    return {name: r.min for name, r in spec.axes.items()}


def reference(model: torch.nn.Module, spec: ModelSpec) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    feeds = spec.example_inputs(**validation_axes(spec))
    with torch.no_grad():
        outputs = model(*(feeds[n] for n in spec.input_names))
    return feeds, dict(zip(spec.output_names, outputs))


def save_reference(path: Path, feeds: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tensors = {f"input.{k}": v.contiguous() for k, v in feeds.items()}
    tensors.update({f"output.{k}": v.float().contiguous() for k, v in outputs.items()})
    save_file(tensors, str(path))


def load_reference(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    tensors = load_file(str(path))

    def pick(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    return pick("input."), pick("output.")


def max_abs_diffs(got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {k: float((got[k].float().cpu() - want[k].float()).abs().max()) for k in want}


def check(got: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor], precision: str, what: str) -> dict:
    """Raise ``ValidationError`` past the tolerance; return the measured numbers for the manifest."""
    diffs = max_abs_diffs(got, want)
    tol = TOLERANCE[precision]
    limits = {k: tol * max(1.0, float(v.abs().max())) for k, v in want.items()}
    failed = {k: (diffs[k], limits[k]) for k in want if not diffs[k] <= limits[k]}  # NaN fails too
    if failed:
        raise ValidationError(f"{what}: outputs differ from torch fp32 beyond tolerance (diff, limit): {failed}")
    return {"reference": "torch float32", "max_abs_diff": diffs, "limit": limits, "tolerance": tol,
            "rule": "max|x - ref| <= tolerance * max(1, max|ref|)"}


def validate_onnx(path: Path, spec: ModelSpec, reference_file: Path, precision: str) -> dict:
    """Run ``path`` on onnxruntime-CPU at the reference shapes and check it against torch."""
    from refsd_trt.engine.onnxruntime_backend import OrtEngine

    feeds, want = load_reference(reference_file)
    engine = OrtEngine(spec, path, device="cpu")
    cast = {n: feeds[n].to(engine.input_dtype(n)) for n in spec.input_names}
    result = check(engine.run(cast), want, precision, f"{path.name} on onnxruntime-cpu")
    return {**result, "runtime": engine.backend, "shapes": {k: list(v.shape) for k, v in feeds.items()}}
