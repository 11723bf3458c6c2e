"""From raw YOLO head output to the people kept in each image, on the device.

YOLOv8 heads (detect, seg, pose) emit ``(B, 4 + nc + extra, anchors)``: a center-size box in
letterbox pixels, one score per class, then per-anchor extras (mask coefficients or keypoints).
The rules follow ultralytics' ``non_max_suppression`` with ``multi_label=False``: an anchor's class
is its best class, it is a person when that class is in the person set, and it is kept when that
score is above ``conf`` (strictly). All person classes are one category for NMS (the fall detector's
"Normal" and "Fall" boxes of one person must suppress each other), so NMS is class-agnostic within
an image and never across images.

YOLOv5 heads (``objectness=True``) emit rows last, ``(B, anchors, 4 + 1 + nc + extra)``, with an
objectness score before the class scores. Their rule (YOLOv5's ``non_max_suppression``) scores a
class as objectness × class score and keeps an anchor whose objectness and best such score are
above ``conf``; the first condition follows from the second (a class score is at most 1), so the
two heads differ only in where the numbers sit and what the score is.

The only host synchronisations are the ones dynamic sizes force: ``nonzero`` and NMS decide how
many candidates exist, and splitting the batch needs the per-image counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms


@dataclass(frozen=True)
class Selected:
    """One image's kept anchors, best score first, in letterbox pixels."""

    boxes: torch.Tensor  # (n, 4) xyxy float32
    scores: torch.Tensor  # (n,) float32
    extras: torch.Tensor  # (n, extra) float32: mask coefficients or keypoints


def xywh_to_xyxy(xywh: torch.Tensor) -> torch.Tensor:
    half = xywh[..., 2:4] / 2
    return torch.cat((xywh[..., :2] - half, xywh[..., :2] + half), dim=-1)


def select_people(output0: torch.Tensor, nc: int, person_classes: torch.Tensor, conf: float, iou: float,
                  max_det: int, objectness: bool = False) -> list[Selected]:
    """``output0``: (B, 4 + nc + extra, anchors), or YOLOv5's (B, anchors, 5 + nc + extra) with
    ``objectness``; ``person_classes``: int64 class ids on its device."""
    if objectness:
        pred, first = output0.float(), 5  # (B, anchors, rows)
        score, cls = (pred[..., 5:5 + nc] * pred[..., 4:5]).max(-1)
    else:
        pred, first = output0.float().transpose(1, 2), 4
        score, cls = pred[..., 4:4 + nc].max(-1)
    keep = (score > conf) & torch.isin(cls, person_classes)
    image, anchor = keep.nonzero(as_tuple=True)
    rows = pred[image, anchor]
    boxes, scores = xywh_to_xyxy(rows[:, :4]), score[image, anchor]
    kept = batched_nms(boxes, scores, image, iou)  # best score first across the whole batch
    # Regroup per image (a stable sort keeps each image's best-first order), then cap per image.
    kept = kept[torch.sort(image[kept], stable=True).indices]
    counts = torch.bincount(image[kept], minlength=output0.shape[0])
    rank = torch.arange(kept.numel(), device=kept.device) - (counts.cumsum(0) - counts)[image[kept]]
    kept = kept[rank < max_det]
    per_image = counts.clamp(max=max_det).tolist()
    return [
        Selected(b, s, e)
        for b, s, e in zip(boxes[kept].split(per_image), scores[kept].split(per_image),
                           rows[kept, first + nc:].split(per_image))
    ]
