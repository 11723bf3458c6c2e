"""A contact sheet of avatars over photos: each photo beside itself with standing avatars in its boxes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from refsd_trt.avatar.avatars import AvatarRenders, render_avatars
from refsd_trt.avatar.body_model import BodyModel
from refsd_trt.contact_sheet import contact_sheet as labelled_grid
from refsd_trt.kernels import paste_back
from refsd_trt.samples import SAMPLE_PEOPLE
from refsd_trt.types import PersonDetections

_LOOKS = ({"gender": "female", "age": "adult"}, {"gender": "male", "age": "adult"},
          {"gender": "female", "age": "senior"}, {"gender": "male", "age": "teen"})


def overlay(image: np.ndarray, renders: AvatarRenders) -> np.ndarray:
    """Alpha-blend each person's render into an (H, W, 3) uint8 image, far people first."""
    canvas = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    order = torch.argsort(renders.fit.camera.translation[:, 2], descending=True)
    paste_back(canvas, renders.render.rgb[order].float().cpu(), renders.crop_boxes[order].cpu(),
               renders.render.alpha[order].float().cpu())
    return (canvas.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def contact_sheet(
    images: Sequence[tuple[str, np.ndarray]],
    boxes: Mapping[str, Sequence[tuple[float, float, float, float]]] = SAMPLE_PEOPLE,
    body: BodyModel | None = None, seed: int = 0, row_height: int = 360,
) -> np.ndarray:
    """(H, W, 3) uint8 sheet (``refsd_trt.contact_sheet``'s layout), one row per (name, image) that
    has boxes: the photo, then its ``avatar_preview``."""
    rows = [[(name, image), (f"{name}: avatars", avatar_preview(image, boxes[name], body, seed))]
            for name, image in images if name in boxes]
    if not rows:
        raise ValueError("no image in `images` has person boxes")
    return np.asarray(labelled_grid(rows, height=row_height))


def avatar_preview(image: np.ndarray, boxes: Sequence[tuple[float, float, float, float]],
                   body: BodyModel | None = None, seed: int = 0) -> np.ndarray:
    """``image`` with an avatar standing in each xyxy box (attributes cycle through a few age groups
    and genders; person i gets seed ``seed + i``)."""
    height, width = image.shape[:2]
    person_boxes = torch.tensor(boxes, dtype=torch.float32)
    count = len(person_boxes)
    detections = PersonDetections(
        boxes=person_boxes, scores=torch.ones(count), masks=torch.zeros((count, height, width), dtype=torch.bool)
    )
    attributes = [_LOOKS[(seed + i) % len(_LOOKS)] for i in range(count)]
    renders = render_avatars(detections, (height, width), attributes, [seed + i for i in range(count)], body,
                             supersample=2)
    return overlay(image, renders)
