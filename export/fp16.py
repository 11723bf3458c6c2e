"""fp32 ONNX -> fp16 ONNX, inputs and outputs included.

TensorRT 10's strongly typed mode (the only mode in TensorRT 11) takes each tensor's precision
from the ONNX file, so fp16 engines are built from fp16 graphs. onnxruntime's converter is used
because it handles graphs from the TorchScript exporter (onnxconverter-common produces Cast type
mismatches on them, ENVIRONMENT.md); it keeps its default list of precision-sensitive ops in fp32.
"""

from __future__ import annotations

from pathlib import Path

from refsd_trt.export import onnx_files


def convert(src: Path, dst: Path) -> dict:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx_files.load(src)
    # onnx shape inference cannot serialize models past 2 GB; the fp32 graph is already inferred.
    large = onnx_files.weight_bytes(model) > onnx_files.EXTERNAL_ABOVE
    onnx_files.save(convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=large), dst)
    return {"converter": "onnxruntime.transformers.float16", "keep_io_types": False}
