"""The person detector the pipeline calls, whatever backend runs the network.

``YoloPersonDetector`` drives any YOLOv8 ``Engine`` (TensorRT, onnxruntime, torch): letterbox on
the device, one engine run per batch, selection and mask decoding on the device. A seg model's
masks come from its prototypes; a detect-only model needs a ``BoxMasker`` (the lite path's
GrabCut) that turns boxes into masks. An optional pose engine adds COCO keypoints.

Recall comes first: nothing is dropped for being small, only for scoring ``conf`` or less (default
0.25, ultralytics' predict default) or for overlapping a better box of the same image by more than
``iou`` (default 0.7, ultralytics' predict default; lower values merge people who stand close).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import torch

from refsd_trt.detection.letterbox import Letterboxed, letterbox, minimal_shape
from refsd_trt.detection.masks import prototype_masks
from refsd_trt.detection.pose import KEYPOINTS, attach_keypoints, keypoints_to_image
from refsd_trt.detection.selection import Selected, select_people
from refsd_trt.engine.base import Engine
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


class _Geometry:
    """What an engine's spec says about its image input: batch limit, and a fixed size or a range."""

    def __init__(self, engine: Engine):
        spec = engine.spec
        images = spec.inputs[0]
        self.name, self.dtype = images.name, images.torch_dtype(engine.precision)
        bounds = [(d, d) if isinstance(d, int) else (spec.axes[d].min, spec.axes[d].max) for d in images.shape]
        self.max_batch = bounds[0][1]
        self.min_shape = (bounds[2][0], bounds[3][0])
        self.max_shape = (bounds[2][1], bounds[3][1])
        self.static = self.min_shape == self.max_shape

    def shape_for(self, sizes: Sequence[tuple[int, int]], imgsz: int, stride: int) -> tuple[int, int]:
        if self.static:
            return self.min_shape
        want = minimal_shape(sizes, min(imgsz, *self.max_shape), stride)
        return max(want[0], self.min_shape[0]), max(want[1], self.min_shape[1])


def _rows(engine: Engine, output: str) -> int:
    return next(int(t.shape[1]) for t in engine.spec.outputs if t.name == output)


class YoloPersonDetector(PersonDetector):
    def __init__(self, engine: Engine, person_classes: Sequence[int] = COCO_PERSON, conf: float = 0.25,
                 iou: float = 0.7, max_det: int = 300, imgsz: int = 640, stride: int = 32,
                 pose_engine: Engine | None = None, box_masker: BoxMasker | None = None):
        """``engine``: a YOLOv8 seg (``output0`` + ``output1`` prototypes) or detect model;
        ``person_classes``: the class ids that are people (COCO: 0; the fall detector: 0 and 1);
        ``imgsz``: the letterbox size for engines with dynamic height/width (static engines use
        their own); ``pose_engine``: a YOLOv8-pose model whose keypoints are attached by box IoU."""
        self.engine, self.pose_engine, self.box_masker = engine, pose_engine, box_masker
        self.conf, self.iou, self.max_det, self.imgsz, self.stride = conf, iou, max_det, imgsz, stride
        self.protos = "output1" in engine.spec.output_names
        if not self.protos and box_masker is None:
            raise ValueError(f"{engine.spec.name} has no mask prototypes: pass a box_masker")
        self.nc = _rows(engine, "output0") - 4 - (_rows(engine, "output1") if self.protos else 0)
        self.geometry = _Geometry(engine)
        self.classes = torch.tensor(person_classes, dtype=torch.int64)
        if pose_engine is not None:
            self.pose_nc = _rows(pose_engine, "output0") - 4 - KEYPOINTS * 3
            self.pose_geometry = _Geometry(pose_engine)
            self.pose_classes = torch.tensor(COCO_PERSON, dtype=torch.int64)
        self.mask_source = "segmentation" if self.protos else box_masker.source

    def detect(self, images: Sequence[torch.Tensor]) -> list[PersonDetections]:
        step = min(self.geometry.max_batch, self.pose_geometry.max_batch if self.pose_engine else len(images))
        return [d for start in range(0, len(images), step) for d in self._detect_batch(images[start:start + step])]

    def _layout(self, sizes: Sequence[tuple[int, int]], geometry: _Geometry) -> tuple:
        """(input shape, fit size, dtype): everything the letterbox depends on besides the images."""
        fit = geometry.min_shape if geometry.static else (min(self.imgsz, *geometry.max_shape),) * 2
        return geometry.shape_for(sizes, self.imgsz, self.stride), fit, geometry.dtype

    def _letterbox(self, images: Sequence[torch.Tensor], layout: tuple) -> Letterboxed:
        shape, fit, dtype = layout
        return letterbox(images, shape, dtype, fit)

    def _run(self, engine: Engine, geometry: _Geometry, batch: Letterboxed) -> dict[str, torch.Tensor]:
        out = engine.run({geometry.name: batch.images.to(engine.device)})
        return {name: t.to(batch.images.device) for name, t in out.items()}

    def _people(self, output0: torch.Tensor, nc: int, classes: torch.Tensor) -> list[Selected]:
        return select_people(output0, nc, classes.to(output0.device), self.conf, self.iou, self.max_det)

    def _detect_batch(self, images: Sequence[torch.Tensor]) -> list[PersonDetections]:
        sizes = [(int(x.shape[1]), int(x.shape[2])) for x in images]
        layout = self._layout(sizes, self.geometry)
        batch = self._letterbox(images, layout)
        out = self._run(self.engine, self.geometry, batch)
        found = self._people(out["output0"], self.nc, self.classes)
        poses = self._poses(images, sizes, layout, batch) if self.pose_engine is not None else None
        results = []
        for i, (image, place, sel) in enumerate(zip(images, batch.placements, found)):
            boxes = place.to_image(sel.boxes)
            if self.protos:
                masks = prototype_masks(out["output1"][i], sel.extras, boxes, place, tuple(batch.images.shape[2:]))
            else:
                masks = self.box_masker(image, boxes)
            keypoints = attach_keypoints(boxes, *poses[i]) if poses is not None else None
            results.append(PersonDetections(boxes, sel.scores, masks, keypoints, self.mask_source))
        return results

    def _poses(self, images: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]], layout: tuple,
               batch: Letterboxed) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image, the pose model's (boxes, keypoints) in image pixels; the seg model's letterbox
        is reused when the pose engine takes the same input."""
        pose_layout = self._layout(sizes, self.pose_geometry)
        pose_batch = batch if pose_layout == layout else self._letterbox(images, pose_layout)
        out = self._run(self.pose_engine, self.pose_geometry, pose_batch)
        found = self._people(out["output0"], self.pose_nc, self.pose_classes)
        return [(p.to_image(s.boxes), keypoints_to_image(s.extras, p)) for p, s in zip(pose_batch.placements, found)]
