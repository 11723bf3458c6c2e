"""What the detector found, drawn over the photo: the demo sheet's middle column, so a user sees the
masks and keypoints the avatars were fitted to before judging the output."""

from __future__ import annotations

import cv2
import numpy as np

from refsd_trt.types import PersonDetections

# COCO-17 limbs (keypoint index pairs): face, arms, torso, legs.
SKELETON = ((0, 1), (0, 2), (1, 3), (2, 4), (5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12),
            (11, 13), (13, 15), (12, 14), (14, 16))
COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230))
LOW = (160, 160, 160)  # people below the detector's threshold: filled, no avatar
VISIBLE = 0.5


def draw_detections(image: np.ndarray, detections: PersonDetections) -> np.ndarray:
    """A copy of ``image`` (HxWx3 uint8 RGB) with each person's mask tinted, box outlined and
    confident keypoints joined; low-confidence people in grey with their score."""
    out = image.copy()
    thick = max(1, round(max(image.shape[:2]) / 400))
    masks = detections.masks.cpu().numpy()
    low = detections.low_confidence.cpu().numpy() if detections.low_confidence is not None \
        else np.zeros(len(detections), dtype=bool)
    keypoints = detections.keypoints.cpu().numpy() if detections.keypoints is not None else None
    for j, (box, score) in enumerate(zip(detections.boxes.cpu().numpy(), detections.scores.cpu().numpy())):
        colour = LOW if low[j] else COLOURS[j % len(COLOURS)]
        out[masks[j]] = (0.55 * out[masks[j]] + 0.45 * np.array(colour)).astype(np.uint8)
        x0, y0, x1, y1 = box.round().astype(int).tolist()
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, thick)
        label = f"{score:.2f}" + (" low: filled" if low[j] else "")
        cv2.putText(out, label, (x0 + 2, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, colour, thick)
        if keypoints is None or low[j]:
            continue
        points = keypoints[j]
        for a, b in SKELETON:
            if points[a, 2] >= VISIBLE and points[b, 2] >= VISIBLE:
                cv2.line(out, tuple(int(v) for v in points[a, :2]), tuple(int(v) for v in points[b, :2]),
                         (255, 255, 255), thick)
        for x, y, conf in points:
            if conf >= VISIBLE:
                cv2.circle(out, (int(x), int(y)), 2 * thick, colour, -1)
    return out
