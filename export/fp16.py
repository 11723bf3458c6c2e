"""fp32 ONNX -> fp16 ONNX, with the parts fp16 breaks kept fp32.

TensorRT 10's strongly typed mode (the only mode in TensorRT 11) takes each tensor's precision
from the ONNX file, so fp16 engines are built from fp16 graphs, and whatever must stay fp32 has to
be fp32 in the file. onnxruntime's converter is used because it handles graphs from the TorchScript
exporter (onnxconverter-common produces Cast type mismatches on them, ENVIRONMENT.md). On top of
its default block list, three things stay fp32, as diffusers keeps them when it runs in fp16:

- the timestep and SDXL ``time_ids`` inputs and their sinusoidal embeddings (diffusers'
  ``Timesteps``: ``t * freq`` reaches 999 and fp16 holds it to 0.5, so sin/cos would be off by up
  to about 0.3 on values in [-1, 1]; diffusers computes them in fp32 and casts after), up to the
  first layer with weights (the embedding MLP's Gemm/MatMul, fp16 like every other layer);
- normalizations (GroupNorm, which the TorchScript exporter writes as InstanceNormalization,
  LayerNormalization, GroupNormalization): their sum of squares overflows fp16 on large
  activations (VAEs that are not fp16-fixed, such as SD 1.5 inpainting's own).

onnxruntime's converter casts every blocked node's inputs to fp32 and its outputs back to fp16,
so a chain of blocked nodes would round-trip through fp16 between each pair (the sinusoid's
argument rounded before its sin, the very error to avoid): those Cast pairs are removed, so the
chain stays fp32 from the fp32 input to its last node. ``fp32_report`` reads the result back.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import onnx
from onnx import TensorProto

from refsd_trt.export import onnx_files

# Bump when the conversion rules change (part of the onnx-fp16 artifacts' content key).
RULES_VERSION = 2
# Graph inputs that stay fp32, with the fp32 subgraph computed from them (the specs give them
# dtype "float32" whatever the model's precision).
FP32_INPUTS = ("timestep", "time_ids")
FP32_OPS = ("InstanceNormalization", "LayerNormalization", "GroupNormalization")
# Layers with weights end an fp32 input's subgraph: they run fp16 like every other layer.
WEIGHTED_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose"})
_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
# Names onnxruntime's converter gives the Casts it inserts (onnxruntime/transformers/float16.py).
_TO_FP16_CASTS = ("graph_input_cast", "_cast_to_fp16_node")
_TO_FP32_CAST = "_cast_to_fp32_node"


def _elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    types = {t.name: t.data_type for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    return types


def name_nodes(graph: onnx.GraphProto) -> None:
    """Give unnamed nodes unique names (the converter's node block list is by name)."""
    taken = {n.name for n in graph.node}
    for i, node in enumerate(graph.node):
        if not node.name:
            name = f"fp16_unnamed_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def sinusoid_nodes(graph: onnx.GraphProto, inputs: Iterable[str]) -> list[str]:
    """Names of the nodes computed from ``inputs`` alone (besides constants and integer tensors),
    stopping before the first layer with weights: for a diffusers UNet, the ``Timesteps``
    projections (Expand/Reshape, Unsqueeze, Mul by the frequencies, Sin, Cos, Concat, the flip's
    Slices). A node that also reads another float tensor (SDXL's Concat with ``text_embeds``) is
    not part of it, and nothing after it is."""
    types = _elem_types(graph)
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    reached, names = set(inputs), []
    for node in graph.node:  # ONNX nodes are stored in topological order
        if node.op_type in WEIGHTED_OPS or node.op_type == "Constant":
            continue
        present = [i for i in node.input if i]
        if not any(i in reached for i in present):
            continue
        float_inputs = [i for i in present if types.get(i, TensorProto.FLOAT) in _FLOATS]
        if all(i in reached or i in constants for i in float_inputs):
            names.append(node.name)
            reached.update(node.output)
    return names


def constants_only_read_by(graph: onnx.GraphProto, names: set[str], ops: set[str]) -> list[str]:
    """Constant nodes whose every reader is one of the nodes ``names`` or of the op types ``ops``:
    kept fp32 with them (the converter would round their values to fp16 first, e.g. the sinusoid's
    frequencies, where it does not fold them into initializers, which it keeps fp32 by itself)."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    return [n.name for n in graph.node if n.op_type == "Constant"
            and not any(o in outputs for o in n.output)
            and all(readers.get(o) for o in n.output)
            and all(r.name in names or r.op_type in ops for o in n.output for r in readers[o])]


def _drop_round_trips(graph: onnx.GraphProto) -> int:
    """Remove fp32 -> fp16 -> fp32 Cast pairs the converter put between consecutive fp32 nodes
    (and between a kept-fp32 input and its first fp32 node); returns how many fp32 Casts went."""
    producer = {o: n for n in graph.node for o in n.output}
    removed, renames = [], {}
    for node in graph.node:
        if node.op_type != "Cast" or not node.name.endswith(_TO_FP32_CAST):
            continue
        first = producer.get(node.input[0])
        if first is None or first.op_type != "Cast" or not any(s in first.name for s in _TO_FP16_CASTS):
            continue
        renames[node.output[0]] = first.input[0]  # the fp32 tensor before the round trip
        removed.append(node)
    for node in removed:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    # fp16 Casts whose every reader was such a round trip now feed nothing.
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    dead = [n for n in graph.node if n.op_type == "Cast" and any(s in n.name for s in _TO_FP16_CASTS)
            and not any(o in read for o in n.output)]
    for node in dead:
        graph.node.remove(node)
    gone = set(renames) | {o for n in dead for o in n.output}
    for value in [v for v in graph.value_info if v.name in gone]:
        graph.value_info.remove(value)
    return len(removed)


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after the producers of its inputs, otherwise keeping their order
    (the converter appends its Casts at the end; onnx's checker and some parsers want the order
    the ONNX standard asks for). Kahn's algorithm, linear in the graph's size."""
    import heapq

    nodes = list(graph.node)
    producer = {o: k for k, n in enumerate(nodes) for o in n.output if o}
    waiting = [0] * len(nodes)
    readers: dict[int, list[int]] = {}
    for k, node in enumerate(nodes):
        for source in {producer[i] for i in node.input if i in producer}:
            waiting[k] += 1
            readers.setdefault(source, []).append(k)
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for reader in readers.get(k, []):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                heapq.heappush(ready, reader)
    if len(order) != len(nodes):
        raise ValueError("the converted graph has a cycle")
    copies = [onnx.NodeProto() for _ in order]
    for copy, k in zip(copies, order):
        copy.CopyFrom(nodes[k])
    del graph.node[:]
    graph.node.extend(copies)


def convert_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """The fp16 model and what was kept fp32 (for the manifest)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    graph = model.graph
    name_nodes(graph)
    keep = [i.name for i in graph.input if i.name in FP32_INPUTS
            and i.type.tensor_type.elem_type == TensorProto.FLOAT]
    # The node rule reads tensor types; the converter would infer them too. A graph read without its
    # external weights is small enough for onnx's in-memory inference whatever the model's size.
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    fp32_nodes = sinusoid_nodes(graph, keep)
    fp32_nodes += constants_only_read_by(graph, set(fp32_nodes), set(FP32_OPS))
    with _shapes_from_dims():
        converted = convert_float_to_float16(
            model, keep_io_types=keep, disable_shape_infer=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP32_OPS], node_block_list=fp32_nodes)
    dropped = _drop_round_trips(converted.graph)
    topological_sort(converted.graph)
    return converted, {"fp32_inputs": keep, "fp32_ops": list(FP32_OPS), "fp32_input_nodes": len(fp32_nodes),
                       "round_trips_removed": dropped}


def convert(src: Path, dst: Path) -> dict:
    """Convert ``src`` into ``dst``. The graph is read without its external weights: past protobuf's
    2 GB they are converted one tensor at a time on their way to ``dst``'s weights file (a full-size
    SDXL UNet never holds 10 GB of fp32 beside 5 GB of fp16), by the converter's own rounding."""
    model = onnx_files.load_graph(src)
    stored = {t.name: t.data_type for t in onnx_files.external_tensors(model)}
    converted, kept = convert_model(model)
    if stored:
        onnx_files.save_streamed(converted, dst, src.parent, _as_converted(stored))
    else:
        onnx_files.save(converted, dst)
    return {"converter": "onnxruntime.transformers.float16", "rules": RULES_VERSION, "keep_io_types": kept["fp32_inputs"],
            "external_weights": len(stored), **kept}


def _as_converted(stored: dict[str, int]):
    """Bytes of an external weight as the converter left its type: fp32 rounded to fp16 as it rounds
    weights it holds in memory, anything else unchanged."""
    import numpy as np
    from onnxruntime.transformers.float16 import convert_np_to_float16

    def transform(tensor: onnx.TensorProto, data: bytes) -> bytes:
        was = stored[tensor.name]
        if was == TensorProto.FLOAT and tensor.data_type == TensorProto.FLOAT16:
            return convert_np_to_float16(np.frombuffer(data, dtype=np.float32)).tobytes()
        if was != tensor.data_type:
            raise ValueError(f"fp16 conversion changed weight {tensor.name!r} from type {was} to {tensor.data_type}, "
                             "which the external-weights path does not convert")
        return data

    return transform


@contextmanager
def _shapes_from_dims():
    """The converter reads a weight's whole data only for its shape (``make_value_info_from_tensor``
    builds an array); a weight left on disk has no data in the graph, and its dims say the same."""
    from onnxruntime.transformers import float16 as converter

    def value_info(tensor: onnx.TensorProto) -> onnx.ValueInfoProto:
        return onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))

    original, converter.make_value_info_from_tensor = converter.make_value_info_from_tensor, value_info
    try:
        yield
    finally:
        converter.make_value_info_from_tensor = original


def fp32_report(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Read a converted graph back (after type inference): the input type of every Sin, Cos and
    normalization node, and of the kept-fp32 graph inputs. Tests and the GPU check use it."""
    inferred = onnx.shape_inference.infer_shapes(model) if onnx_files.weight_bytes(model) <= onnx_files.EXTERNAL_ABOVE \
        else model
    types = _elem_types(inferred.graph)
    name = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16"}
    out: dict[str, list[str]] = {}
    for node in inferred.graph.node:
        if node.op_type in ("Sin", "Cos", *FP32_OPS):
            out.setdefault(node.op_type, []).append(name.get(types.get(node.input[0], 0), "unknown"))
    for value in inferred.graph.input:
        if value.name in FP32_INPUTS:
            out[value.name] = [name.get(value.type.tensor_type.elem_type, "unknown")]
    return out
