"""The person detector the pipeline calls, whatever backend runs the network.

``YoloPersonDetector`` drives any YOLOv8 ``Engine`` (TensorRT, onnxruntime, torch): letterbox on
the device, one engine run per batch, selection and mask decoding on the device. A seg model's
masks come from its prototypes; a detect-only model needs a ``BoxMasker`` (the lite path's
GrabCut) that turns boxes into masks. An optional pose engine adds COCO keypoints.

Recall comes first: nothing is dropped for being small, only for scoring ``conf`` or less (default
0.25, ultralytics' predict default) or for overlapping a better box of the same image by more than
``iou`` (default 0.7, ultralytics' predict default; lower values merge people who stand close).
With a ``floor``, people scoring in (floor, conf] are kept too and flagged ``low_confidence``:
too uncertain to replace with an avatar, too likely to be a person to leave unanonymized.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import torch

from refsd_trt.detection.masks import prototype_masks
from refsd_trt.detection.pose import YoloPoseEstimator, attach_keypoints
from refsd_trt.detection.runner import IMGSZ, YoloRunner
from refsd_trt.engine.base import Engine
from refsd_trt.threads import one_thread
from refsd_trt.types import PersonDetections

COCO_PERSON = (0,)


class PersonDetector(ABC):
    @abstractmethod
    def detect(self, images: Sequence[torch.Tensor]) -> list[PersonDetections]:
        """``images``: (3, H, W) uint8 RGB tensors on one device, any sizes -> one record per image,
        in that image's pixels, on the same device."""


class BoxMasker(Protocol):
    source: str  # the PersonDetections.mask_source its masks carry

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 image, (n, 4) xyxy boxes -> (n, H, W) bool on the image's device."""


class YoloPersonDetector(PersonDetector):
    def __init__(self, engine: Engine, person_classes: Sequence[int] = COCO_PERSON, conf: float = 0.25,
                 iou: float = 0.7, max_det: int = 300, imgsz: int = IMGSZ, stride: int = 32,
                 pose_engine: Engine | None = None, box_masker: BoxMasker | None = None,
                 floor: float | None = None, objectness: bool = False):
        """``engine``: a YOLOv8 seg (``output0`` + ``output1`` prototypes) or detect model, or a
        YOLOv5 one with ``objectness``; ``person_classes``: the class ids that are people (COCO: 0;
        the fall detector: 0 and 1); ``imgsz``: the letterbox size for engines with dynamic
        height/width (static engines use their own); ``pose_engine``: a YOLOv8-pose model whose
        keypoints are attached by box IoU; ``floor``: keep and flag people scoring in (floor, conf]."""
        spec = engine.spec
        self.protos = "output1" in spec.output_names
        if not self.protos and box_masker is None:
            raise ValueError(f"{spec.name} has no mask prototypes: pass a box_masker")
        if floor is not None and not 0 <= floor <= conf:
            raise ValueError(f"floor must lie in [0, conf={conf}], got {floor}")
        self.conf, self.floor = conf, floor
        nm = next(int(t.shape[1]) for t in spec.outputs if t.name == "output1") if self.protos else 0
        # NMS over the floor's candidates keeps the same confident people as over conf's: a box
        # is only ever suppressed by a better-scoring one, and those are confident too.
        self.runner = YoloRunner(engine, person_classes, nm, conf if floor is None else floor, iou, max_det, imgsz,
                                 stride, objectness)
        self.pose = YoloPoseEstimator(pose_engine, conf, iou, max_det, imgsz, stride) if pose_engine else None
        self.box_masker = box_masker
        self.engines = {"detector": engine, **({"pose": pose_engine} if pose_engine else {})}
        self.mask_source = "segmentation" if self.protos else box_masker.source

    def detect(self, images: Sequence[torch.Tensor]) -> list[PersonDetections]:
        # On CPUs each image goes alone: it is letterboxed to its own rectangle rather than the batch's
        # largest, and a batch's activations outgrow the caches (YOLOv5s-seg on 2 cores, onnxruntime:
        # 0.44 s per 640x640 image in a batch of 4, 0.23 s alone, 0.21 s alone at 640x480).
        step = 1 if self.runner.engine.device.type == "cpu" else min(
            self.runner.max_batch, self.pose.runner.max_batch if self.pose else self.runner.max_batch)
        # The engines keep their own thread pools; the torch work around them (letterbox, mask
        # upsampling) is too small to gain from a second thread on a shared CPU (refsd_trt.threads):
        # lite's detect took 0.39-0.41 s per photo on one thread, 0.51-0.54 s on two (alternating runs).
        with one_thread():
            return [d for start in range(0, len(images), step) for d in self._detect_batch(images[start:start + step])]

    def _detect_batch(self, images: Sequence[torch.Tensor]) -> list[PersonDetections]:
        layout = self.runner.layout([(int(x.shape[1]), int(x.shape[2])) for x in images])
        batch = self.runner.letterbox(images, layout)
        found, out = self.runner.run(batch)
        input_shape = tuple(batch.images.shape[2:])
        results = []
        for i, (image, place, sel) in enumerate(zip(images, batch.placements, found)):
            boxes = place.to_image(sel.boxes)
            if self.protos:
                masks = prototype_masks(out["output1"][i], sel.extras, boxes, place, input_shape)
            else:
                masks = self.box_masker(image, boxes)
            low = None if self.floor is None else sel.scores <= self.conf
            results.append(PersonDetections(boxes, sel.scores, masks, None, self.mask_source, low))
        if self.pose is not None:
            for record, (pose_boxes, keypoints) in zip(results, self.pose.estimate(images, (layout, batch))):
                record.keypoints = attach_keypoints(record.boxes, pose_boxes, keypoints)
        return results
