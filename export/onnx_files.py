"""Reading and writing ONNX files, with external weights when a model passes protobuf's 2 GB limit.

Models past the limit are never gathered into one protobuf: their graph is read without its
weights (``load_graph``, a few MB for a 10 GB SDXL UNet) and ``save_streamed`` writes the weights
one tensor at a time from the files they lie in, optionally transformed (fp16 conversion), so the
memory a step needs is the graph plus one tensor whatever the model's size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

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


def load_graph(path: Path) -> onnx.ModelProto:
    """``path`` without its external weights: they stay on disk, referenced by location and offset."""
    return onnx.load_model(str(path), load_external_data=False)


def external_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The initializers of ``model`` (loaded by ``load_graph``) whose bytes lie in a file beside it.
    The TorchScript exporter and ``save`` put only initializers there (``convert_attribute`` off)."""
    return [t for t in model.graph.initializer if uses_external_data(t)]


def read_external(tensor: onnx.TensorProto, folder: Path) -> bytes:
    """The stored bytes of one external tensor, its location taken relative to ``folder``."""
    info = ExternalDataInfo(tensor)
    source = (folder / info.location).resolve()
    if folder.resolve() not in source.parents:
        raise ValueError(f"{folder}: tensor {tensor.name!r} points outside its model's folder ({info.location})")
    with open(source, "rb") as f:
        f.seek(info.offset or 0)
        data = f.read(info.length) if info.length is not None else f.read()
    if info.length is not None and len(data) != info.length:
        raise ValueError(f"{source}: tensor {tensor.name!r} needs {info.length} bytes at offset {info.offset or 0}, "
                         f"the file holds {len(data)}")
    return data


def save_streamed(model: onnx.ModelProto, path: Path, source: Path,
                  transform: Callable[[onnx.TensorProto, bytes], bytes] | None = None) -> None:
    """Write ``model``, loaded by ``load_graph`` from a file in the folder ``source``, as ``path``
    with every external weight in ``<path>.data``: read, passed through ``transform(tensor, stored
    bytes)`` (the tensor as it is now: its type may have changed) and appended, one at a time.
    Weights stored inside the graph stay there."""
    data_name = f"{path.name}.data"
    if any(ExternalDataInfo(t).location == data_name for t in external_tensors(model)) and \
            source.resolve() == path.parent.resolve():
        raise ValueError(f"{path}: would overwrite the weights file it reads ({data_name})")
    with open(path.parent / data_name, "wb") as out:
        for tensor in external_tensors(model):
            data = read_external(tensor, source)
            if transform is not None:
                data = transform(tensor, data)
            offset = out.tell()
            out.write(data)
            del tensor.external_data[:]  # onnx's set_external_data wants the bytes in the tensor
            for key, value in (("location", data_name), ("offset", offset), ("length", len(data))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
    onnx.save_model(model, str(path))


def resave(src: Path, dst: Path) -> None:
    """``src`` written again as ``dst``: external weights (however many files the writer used, the
    TorchScript exporter one per tensor) streamed into ``<dst>.data``; an in-memory model through
    ``save``, which moves its weights out when it is too large."""
    graph = load_graph(src)
    if external_tensors(graph):
        save_streamed(graph, dst, src.parent)
    else:
        save(graph, dst)


def opset_of(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
