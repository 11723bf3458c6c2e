"""Trace a spec wrapper to ONNX with named inputs/outputs and the spec's dynamic axes.

The legacy TorchScript exporter (``dynamo=False``) is used on purpose: about 1 s per tiny model
against 6-19 s for the dynamo exporter, the same accuracy (about 2e-6) with dynamic batch and
size, and its graphs convert cleanly to fp16 with onnxruntime's converter (ENVIRONMENT.md).
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from refsd_trt.export import onnx_files
from refsd_trt.export.sources import Loaded

# The legacy exporter's opsets; 17 is the first with LayerNormalization, which TensorRT parses natively.
OPSETS = range(17, 21)


def export(loaded: Loaded, path: Path, feeds: Mapping[str, torch.Tensor], opset: int) -> None:
    if opset not in OPSETS:
        raise ValueError(f"opset must be in {OPSETS.start}..{OPSETS.stop - 1} for the TorchScript exporter, got {opset}")
    spec = loaded.spec
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), torch.inference_mode(False), \
            torch.no_grad():
        # Tracer warnings about Python-side shape arithmetic are expected for diffusers models.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            loaded.model, tuple(feeds[n] for n in spec.input_names), str(raw),
            input_names=list(spec.input_names), output_names=list(spec.output_names),
            dynamic_axes=spec.dynamic_axes(), opset_version=opset, do_constant_folding=True, dynamo=False,
        )
        # Re-save so oversized models land as one model file plus one weights file beside it (the
        # exporter writes one file per weight past 2 GB), streamed: the torch model is still in memory.
        onnx_files.resave(raw, path)
