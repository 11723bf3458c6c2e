"""YOLOv8-pose keypoints in image coordinates, and their attachment to segmentation detections."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import box_iou

from refsd_trt.detection.letterbox import Letterboxed, Placement
from refsd_trt.detection.runner import IMGSZ, Layout, YoloRunner
from refsd_trt.engine.base import Engine

KEYPOINTS = 17  # COCO order
MATCH_IOU = 0.5  # a pose box and a seg box with less overlap than this are different people


def keypoints_to_image(extras: torch.Tensor, placement: Placement) -> torch.Tensor:
    """The pose head's per-anchor extras (n, 17*3: x, y in letterbox pixels, sigmoid confidence)
    -> (n, 17, 3) in original-image pixels. Like ultralytics, every point is clipped to the image,
    whatever its confidence."""
    kpts = extras.view(-1, KEYPOINTS, 3)
    return torch.cat((placement.to_image(kpts[..., :2]), kpts[..., 2:]), dim=-1)


class YoloPoseEstimator:
    """People and their keypoints from a YOLOv8-pose engine (one class: person)."""

    def __init__(self, engine: Engine, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                 imgsz: int = IMGSZ, stride: int = 32):
        self.runner = YoloRunner(engine, (0,), KEYPOINTS * 3, conf, iou, max_det, imgsz, stride)

    def estimate(self, images: Sequence[torch.Tensor], shared: tuple[Layout, Letterboxed] | None = None,
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image, (boxes (n, 4), keypoints (n, 17, 3)) in image pixels. ``shared``: another
        engine's letterboxed batch of the same images, reused when this engine's layout is equal."""
        layout = self.runner.layout([(int(x.shape[1]), int(x.shape[2])) for x in images])
        batch = shared[1] if shared is not None and shared[0] == layout else self.runner.letterbox(images, layout)
        found, _ = self.runner.run(batch)
        return [(p.to_image(s.boxes), keypoints_to_image(s.extras, p)) for p, s in zip(batch.placements, found)]


def attach_keypoints(boxes: torch.Tensor, pose_boxes: torch.Tensor, pose_keypoints: torch.Tensor,
                     min_iou: float = MATCH_IOU) -> torch.Tensor:
    """Give each of ``boxes`` (n, 4) the keypoints of the pose detection whose box matches it.

    A pair matches when each is the other's best IoU and that IoU is at least ``min_iou``: a
    one-to-one matching with no host loop. People without a match get all-zero keypoints, whose
    zero confidence means "unknown" to every consumer.
    """
    out = boxes.new_zeros((boxes.shape[0], KEYPOINTS, 3))
    if boxes.shape[0] == 0 or pose_boxes.shape[0] == 0:
        return out
    iou = box_iou(boxes, pose_boxes)  # (n, m)
    best_iou, best_pose = iou.max(1)
    mutual = iou.argmax(0)[best_pose] == torch.arange(boxes.shape[0], device=boxes.device)
    matched = mutual & (best_iou >= min_iou)
    return torch.where(matched[:, None, None], pose_keypoints[best_pose].float(), out)
