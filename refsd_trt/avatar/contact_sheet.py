"""A contact sheet of avatars over photos: each photo beside itself with standing avatars in its boxes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from refsd_trt.avatar.avatars import AvatarRenders, render_avatars
from refsd_trt.avatar.body_model import BodyModel
from refsd_trt.types import PersonDetections

# Hand-drawn person boxes (xyxy pixels) for the photos ``refsd_trt.samples`` finds, keyed by file stem,
# so the sheet needs no detector.
SAMPLE_PERSON_BOXES: dict[str, list[tuple[float, float, float, float]]] = {
    "bus": [(50, 400, 245, 905), (222, 405, 345, 860), (668, 390, 810, 880), (0, 550, 65, 875)],
    "zidane": [(747, 41, 1141, 712), (123, 193, 714, 712)],
    "astronaut": [(130, 15, 480, 512)],
}


_LOOKS = ({"gender": "female", "age": "adult"}, {"gender": "male", "age": "adult"},
          {"gender": "female", "age": "senior"}, {"gender": "male", "age": "teen"})


def overlay(image: np.ndarray, renders: AvatarRenders) -> np.ndarray:
    """Alpha-blend each person's render into an (H, W, 3) uint8 image, far people first. A preview
    only: the pipeline composites with its own kernels."""
    height, width = image.shape[:2]
    canvas = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    order = torch.argsort(renders.fit.camera.translation[:, 2], descending=True)
    for index in order.tolist():
        x0, y0, x1, y1 = renders.crop_boxes[index].tolist()
        # Resample the crop to image pixels: grid_sample reads crop coordinates in [-1, 1].
        xs = (torch.arange(width) + 0.5 - x0) / (x1 - x0) * 2 - 1
        ys = (torch.arange(height) + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None].float()
        rgba = torch.cat([renders.render.rgb[index], renders.render.alpha[index]]).float().cpu()
        sampled = F.grid_sample(rgba[None], grid, mode="bilinear", align_corners=False)[0]
        alpha = sampled[3:]
        canvas = canvas * (1 - alpha) + sampled[:3] * alpha
    return (canvas.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def contact_sheet(
    images: Sequence[tuple[str, np.ndarray]],
    boxes: Mapping[str, Sequence[tuple[float, float, float, float]]] = SAMPLE_PERSON_BOXES,
    body: BodyModel | None = None, seed: int = 0, row_height: int = 360,
) -> np.ndarray:
    """(H, W, 3) uint8 sheet, one row per (name, image) that has boxes: the photo, then its
    ``avatar_preview``."""
    rows = [
        _resize(np.concatenate([image, avatar_preview(image, boxes[name], body, seed)], axis=1), row_height)
        for name, image in images
        if name in boxes
    ]
    if not rows:
        raise ValueError("no image in `images` has person boxes")
    sheet_width = max(row.shape[1] for row in rows)
    return np.concatenate([np.pad(row, ((0, 0), (0, sheet_width - row.shape[1]), (0, 0))) for row in rows])


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


def _resize(image: np.ndarray, height: int) -> np.ndarray:
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
    width = round(image.shape[1] * height / image.shape[0])
    resized = F.interpolate(tensor, size=(height, width), mode="area")[0]
    return resized.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
