"""Reading and writing ONNX files, with external weights when a model passes protobuf's 2 GB limit."""

from __future__ import annotations

from pathlib import Path

import onnx

# protobuf refuses messages of 2 GiB; stay clear of it (a full SDXL UNet is about 10 GB in fp32).
EXTERNAL_ABOVE = 1_800_000_000


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def save(model: onnx.ModelProto, path: Path) -> None:
    """Write ``path``; weights go to ``<path>.data`` beside it when the model is too large."""
    external = weight_bytes(model) > EXTERNAL_ABOVE
    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=f"{path.name}.data", size_threshold=1024)


def has_external_data(model: onnx.ModelProto) -> bool:
    """Whether any weight of ``model`` (loaded without its external data) lives in a file beside it."""
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def load(path: Path) -> onnx.ModelProto:
    return onnx.load_model(str(path), load_external_data=True)


def opset_of(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
