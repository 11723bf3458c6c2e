"""Face identity: does the anonymized image still hold the original person's face?

dlib's ResNet face descriptor (128-D, 99.38 % on LFW) is the attacker: a face in the output whose
descriptor lies within ``FACE_MATCH`` of the original's is, by dlib's own threshold, the same
person. The detector is dlib's HOG model, independent of the pipeline's YOLO detector, so a face the
pipeline missed is still looked for. Two queries are tried per face, and the closer one counts:
every face the detector finds anywhere in the output, and the descriptor at the original face's box
(an attacker who knows where the face was needs no detector, so a face blurred or shifted until
HOG gives up is still measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from refsd_trt.eval.dlib_resnet import CHIP_SIZE, load_dlib_resnet
from refsd_trt.eval.models import model_path

FACE_MATCH = 0.6  # dlib's documented same-person distance
HOG_WINDOW = 80  # px: the smallest face dlib's frontal detector finds without upsampling
STILL_DETECTED_IOU = 0.3  # loose: a replaced person's new face need not sit exactly where the old one did


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # xyxy pixels, x2/y2 exclusive, clipped to the image
    descriptor: np.ndarray  # (128,) float32
    # HOG detector margin (dlib's threshold is 0). An addition to the shared API, defaulted so Face(box,
    # descriptor) still works: weak detections include non-faces (the astronaut's mission patch scores
    # 0.12) but also real small faces (bus.jpg's second face scores 0.18), so it informs, not filters.
    score: float = float("nan")


@dataclass(frozen=True)
class FaceMatch:
    """One face of an original, judged against one output image."""

    face: Face  # the original's face
    distance: float  # smallest distance over the output's faces and the output's descriptor at face.box
    query: np.ndarray  # the output's descriptor at the original face's box (the re-ID query)
    still_detected: bool  # a face found in the output overlaps face.box with IoU >= 0.3

    @property
    def leaked(self) -> bool:
        return self.distance < FACE_MATCH


def _rgb(image: np.ndarray) -> np.ndarray:
    """A C-contiguous HxWx3 uint8 array, which is all dlib accepts; grey is stacked, alpha dropped."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, not {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    elif image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"images must be HxW or HxWx3 (RGB), not {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes (0 for empty ones)."""
    return float(box_iou(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))
                 .nan_to_num(0.0)[0, 0])


class FaceIdentity:
    """dlib's HOG face detector, 5-point aligner and ResNet descriptor, loaded once.

    The descriptor network is dlib's own (same file, same weights) run by torch
    (``refsd_trt.eval.dlib_resnet``): dlib's ``compute_face_descriptor`` takes ~100 ms a face on one
    core holding the GIL. dlib still finds the face, its 5 points and the 150x150 chip
    (``get_face_chip``, padding 0.25, exactly what ``compute_face_descriptor`` extracts).
    One thread at a time: dlib's detectors keep the image being scanned in the object.
    """

    def __init__(self, upsample: int = 1):
        model_path("dlib-hog-face")  # a missing dlib is one line naming the package, not an ImportError
        landmarks, resnet = model_path("dlib-5-landmarks"), model_path("dlib-resnet-face")
        import dlib

        self._dlib = dlib
        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(landmarks))
        self._resnet = load_dlib_resnet(resnet)

    def _descriptor(self, image: np.ndarray, rect) -> np.ndarray:
        shape = self._shape(image, rect)
        chip = self._dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=0.25)
        # torch's own thread count, not pinned: set_num_threads is process-wide, and on 2 cores 2 threads
        # take ~19 ms a face against ~23 ms for 1 (dlib: ~100-140 ms).
        with torch.inference_mode():
            return self._resnet(torch.from_numpy(chip)[None])[0].numpy()

    def faces(self, image: np.ndarray, min_side: float | None = None) -> list[Face]:
        """Every face HOG finds in an HxWx3 uint8 RGB image, with its descriptor.

        ``min_side``: the smallest face side (pixels) wanted, when known. HOG's window is
        ``HOG_WINDOW`` px (half that with one upsampling), and it costs by the pixel: where the faces
        wanted are at least a window wide, the search runs without upsampling on the image scaled
        so that ``min_side`` fills a window, and faces much smaller than ``min_side`` are not found
        (4 to 20 times fewer pixels than upsampling for a ``min_side`` of 80-180 px). Under a window
        it changes nothing. The boxes are scaled back and the descriptors always come from the
        full-resolution image."""
        image = _rgb(image)
        h, w = image.shape[:2]
        scale, upsample = 1.0, self.upsample
        if min_side is not None and min_side >= HOG_WINDOW:
            scale, upsample = HOG_WINDOW / min_side, 0
        search = image if scale == 1 else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                     interpolation=cv2.INTER_AREA)
        found = []
        rects, scores, _ = self._detector.run(search, upsample, 0.0)
        for rect, score in zip(rects, scores):
            if scale != 1:
                rect = self._dlib.rectangle(*(round(v / scale) for v in (rect.left(), rect.top(), rect.right(),
                                                                          rect.bottom())))
            # The descriptor comes from dlib's own rectangle, which may overhang the border; only the
            # reported box is clipped.
            box = (max(rect.left(), 0), max(rect.top(), 0), min(rect.right() + 1, w), min(rect.bottom() + 1, h))
            found.append(Face(box=tuple(int(v) for v in box), descriptor=self._descriptor(image, rect),
                              score=float(score)))
        return found

    def descriptor_at(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """The descriptor of whatever lies at ``box`` (xyxy) after 5-point alignment inside it.

        What an attacker who knows where the face was gets, whether or not a detector still finds one.
        """
        image = _rgb(image)
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        rect = self._dlib.rectangle(x1, y1, max(x2 - 1, x1), max(y2 - 1, y1))
        return self._descriptor(image, rect)


def match_faces(identity: FaceIdentity, original_faces: Sequence[Face], output: np.ndarray) -> list[FaceMatch]:
    """One ``FaceMatch`` per original face against ``output``; the output is searched for faces once."""
    output = _rgb(output)
    found = identity.faces(output) if original_faces else []
    matches = []
    for face in original_faces:
        query = identity.descriptor_at(output, face.box)
        candidates = [query] + [f.descriptor for f in found]
        distance = min(float(np.linalg.norm(c - face.descriptor)) for c in candidates)
        still = any(iou(f.box, face.box) >= STILL_DETECTED_IOU for f in found)
        matches.append(FaceMatch(face=face, distance=distance, query=query, still_detected=still))
    return matches
