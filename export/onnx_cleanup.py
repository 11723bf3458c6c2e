"""Graph clean-up after tracing: constant folding, dead-node removal, shape inference (onnxslim).

Smaller graphs parse faster in TensorRT and run faster on onnxruntime; names of graph inputs and
outputs and their dynamic axes are preserved, which the specs rely on.

A model whose weights live beside it (past protobuf's 2 GB: every real UNet, SDXL's second text
encoder) is not slimmed: onnxslim works on one in-memory protobuf, and serializing one past 2 GB
fails (``EncodeError``). The TorchScript exporter has already folded its constants; it is checked
by path, which follows external data without loading it.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from refsd_trt.export import onnx_files


def clean(path: Path) -> dict:
    """Clean ``path`` in place; returns node counts before and after, for the manifest."""
    graph = onnx.load_model(str(path), load_external_data=False)  # the graph only: weights stay on disk
    before = len(graph.graph.node)
    if onnx_files.has_external_data(graph):
        facts = {"nodes_before": before, "nodes_after": before, "tool": None,
                 "skipped": "weights in external data (past protobuf's 2 GB): not slimmed, checked by path"}
    else:
        import onnxslim  # export time only

        slim = onnxslim.slim(graph)
        onnx_files.save(slim, path)
        facts = {"nodes_before": before, "nodes_after": len(slim.graph.node), "tool": "onnxslim"}
    # Checked by path: the checker cannot take a model past 2 GB in memory, but follows external data.
    onnx.checker.check_model(str(path), full_check=True)
    return facts
