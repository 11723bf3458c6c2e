"""Identity verification: after a method ran, is each person's face still the original person's?

"Replaced" must mean "no longer recognisable", not "not byte-identical": a lossy round trip (an
inpainting at a tiny strength, a near-identity method) changes every pixel and keeps the face. So,
per person, the original's face is located — dlib's HOG detector around the head the pose keypoints
show (the upper box without keypoints), and the keypoints' own face box — and its dlib ResNet
descriptor is compared with the output's at the same place and with every face HOG finds there in
the output. The closest counts.

A distance means something only where the descriptor sees a face: on a tilted face or a badge HOG
took for one, two identity-free pictures also land close (Zidane's tilted face: 0.53 between the
original and its classical fill). So every distance is also compared with the *null*: the distance
from the original to the fail-safe fill of the same place, which holds no identity. Where the null is
at least dlib's same-person 0.6, the descriptor tells people apart there, and a person is still
recognisable when the output is within ``threshold`` (0.6 plus ``MARGIN``) and clearly closer than
the null (by ``NULL_MARGIN``). Where the null is under 0.6, an absolute distance says nothing, and a
person is still recognisable when the output is within ``NULL_RATIO`` of the null. Either way the
caller then fills them.

The descriptor is the one ``refsd-trt eval`` judges faces with (issue 13 asks for that model); the eval
says so beside its face-leak figures. A person without a findable face cannot be verified; the result
says so and nothing else is inferred.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from refsd_trt.eval.faces import FACE_MATCH, FaceIdentity
from refsd_trt.eval.models import EvalModelMissing

# Same-person distances of one face through lossy changes run 0.11-0.29 (JPEG q30, flips, rescales)
# and different people about 0.78, while small faces (44 px on bus.jpg) sit 0.64-0.70 from anything.
# 0.05 above dlib's 0.6 catches borderline matches without filling every small face regardless.
MARGIN = 0.05
KEYPOINT_CONF = 0.3  # pose keypoints below this are not trusted to place a face
_NOSE, _EYES, _EARS = 0, (1, 2), (3, 4)
# Identity-free pictures of one place (an avatar, the fill) sat within 0.04 of each other on the sample
# photos; lossy copies of the person 0.33-0.64 closer than the fill.
NULL_MARGIN = 0.05
# Where the null is under 0.6: identity-free outputs (avatars) sat at 0.86-1.25 times the null on the
# sample photos, lossy copies of the person (noise, JPEG) at 0.07-0.37 times.
NULL_RATIO = 0.6
MIN_FACE_SHARE = 0.5  # of the keypoints' face box: the smallest face searched for there
MIN_FACE_PX = 12  # below this a descriptor is noise: the face is too small to identify anyone either


@dataclass(frozen=True)
class FaceReferences:
    """One person's face in the original: where the gate looks for it (``head_region``), the smallest
    face searched for there (None: any), and (descriptor, xyxy box) of each face that may be theirs."""

    region: tuple[float, ...]
    min_side: float | None
    faces: list[tuple[np.ndarray, tuple[float, ...]]]


@dataclass(frozen=True)
class IdentityCheck:
    """What the gate found for one person (the manifest records it)."""

    verified: bool  # a face was located and compared
    distance: float | None = None  # smallest descriptor distance, output to original
    # The same, from the fail-safe fill of that face (no identity); None where the distance is at or
    # above ``threshold``, which no null can turn into a match (see ``needs_null``).
    null: float | None = None
    threshold: float = FACE_MATCH + MARGIN
    why: str = ""  # when not verified

    @property
    def matched(self) -> bool:
        if self.distance is None or self.null is None:  # no null: the distance was too far to match
            return False
        if self.null < FACE_MATCH:  # the descriptor cannot tell this place's faces apart in absolute terms
            return self.distance < NULL_RATIO * self.null
        return self.distance < self.threshold and self.distance < self.null - NULL_MARGIN

    def to_record(self) -> dict:
        if not self.verified:
            return {"verified": False, "why": self.why}
        null = None if self.null is None else round(self.null, 4)
        return {"verified": True, "distance": round(self.distance, 4), "null_distance": null,
                "threshold": self.threshold, "matched": self.matched}


def needs_null(distance: float, threshold: float) -> bool:
    """Whether a match at ``distance`` depends on the null. At or above ``threshold`` it cannot match:
    with a null of at least 0.6 a match needs ``distance < threshold``, and with a smaller null it
    needs ``distance < NULL_RATIO * null < 0.36``. So the null's fill and descriptor (a whole-image
    inpaint and a ResNet pass) are only computed for the close calls."""
    return distance < threshold


def keypoint_face_box(keypoints: np.ndarray, person_box: Sequence[float]) -> tuple[float, ...] | None:
    """A square face box from COCO keypoints (nose, eyes, ears), or None without two trusted points.

    Its side is the widest of the ear span, 2.2 eye spans and a seventh of the person's height, about
    what dlib's frontal detector draws from brow to chin."""
    head = [k for k in (_NOSE, *_EYES, *_EARS) if keypoints[k, 2] >= KEYPOINT_CONF]
    if len(head) < 2:
        return None
    cx, cy = keypoints[head, :2].mean(axis=0)

    def span(a: int, b: int) -> float:
        trusted = keypoints[a, 2] >= KEYPOINT_CONF and keypoints[b, 2] >= KEYPOINT_CONF
        return float(np.linalg.norm(keypoints[a, :2] - keypoints[b, :2])) if trusted else 0.0

    side = max(span(*_EARS), 2.2 * span(*_EYES), (person_box[3] - person_box[1]) / 7)
    cy += 0.15 * side  # eyes and nose sit in the upper face; the box reaches down to the chin
    return (float(cx - side / 2), float(cy - side / 2), float(cx + side / 2), float(cy + side / 2))


def head_region(person_box: Sequence[float], face_box: Sequence[float] | None) -> tuple[float, ...]:
    """Where to look for the face: twice the keypoints' face box, or the upper 40 % of the person."""
    if face_box is None:
        x1, y1, x2, y2 = person_box
        return (x1, y1, x2, y1 + 0.4 * (y2 - y1))
    cx, cy = (face_box[0] + face_box[2]) / 2, (face_box[1] + face_box[3]) / 2
    side = face_box[2] - face_box[0]
    return (cx - side, cy - side, cx + side, cy + side)


def _centre_inside(box: Sequence[float], region: Sequence[float]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]


class IdentityGate:
    """dlib's face detector and descriptor, loaded once; ``check`` compares one image's people."""

    def __init__(self, identity: FaceIdentity | None = None):
        self.identity = identity or FaceIdentity()
        self.threshold = FACE_MATCH + MARGIN

    @classmethod
    def available(cls) -> tuple[IdentityGate | None, str]:
        """The gate, or None and the one line saying which package is missing."""
        try:
            return cls(), ""
        except EvalModelMissing as exc:
            return None, str(exc)

    def _faces_in(self, image: np.ndarray, region: Sequence[float],
                  min_side: float | None) -> list[tuple[np.ndarray, tuple[int, ...]]]:
        """(descriptor, box) of every HOG face centred in ``region``, searched on a crop of it with a
        margin (the whole image costs seconds) for faces of at least ``min_side`` px where known
        (see ``FaceIdentity.faces``)."""
        h, w = image.shape[:2]
        x1, y1, x2, y2 = region
        pad = 0.25 * max(x2 - x1, y2 - y1)
        cx1, cy1 = max(int(x1 - pad), 0), max(int(y1 - pad), 0)
        cx2, cy2 = min(int(x2 + pad) + 1, w), min(int(y2 + pad) + 1, h)
        if cx2 - cx1 < MIN_FACE_PX or cy2 - cy1 < MIN_FACE_PX:
            return []
        found = []
        for face in self.identity.faces(np.ascontiguousarray(image[cy1:cy2, cx1:cx2]), min_side):
            box = (face.box[0] + cx1, face.box[1] + cy1, face.box[2] + cx1, face.box[3] + cy1)
            if _centre_inside(box, region):
                found.append((face.descriptor, box))
        return found

    def references(self, original: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray | None,
                   people: Sequence[int]) -> dict[int, FaceReferences]:
        """Each of ``people``'s ``FaceReferences`` in the HxWx3 uint8 RGB ``original``; (n, 4) xyxy boxes,
        (n, 17, 3) COCO keypoints or None. They need nothing of the method's output, so the caller may
        find them while the method runs."""
        found = {}
        for j in people:
            box = boxes[j].tolist()
            placed = keypoint_face_box(keypoints[j], box) if keypoints is not None else None
            region = head_region(box, placed)
            # Faces under half the keypoints' face box are not looked for: that box came within 5 % of
            # HOG's on the sample photos' faces of 90-220 px and 1.5x too large on 44 px ones.
            min_side = (placed[2] - placed[0]) * MIN_FACE_SHARE if placed is not None else None
            faces = self._faces_in(original, region, min_side)
            if placed is not None and placed[2] - placed[0] >= MIN_FACE_PX:
                faces.append((self.identity.descriptor_at(original, placed), placed))
            found[j] = FaceReferences(region, min_side, faces)
        return found

    def check(self, output: np.ndarray, null: np.ndarray | Callable[[], np.ndarray],
              references: Mapping[int, FaceReferences], people: Sequence[int]) -> dict[int, IdentityCheck]:
        """One ``IdentityCheck`` per person index in ``people``, from their ``references`` (see
        ``references``) in the original. HxWx3 uint8 RGB images: ``null`` is the original with those
        people filled by the fail-safe, or a function making it (called at most once, only if some
        person's distance needs it)."""
        null_image = functools.cache(null if callable(null) else lambda: null)
        results = {}
        for j in people:
            wanted = references[j]
            if not wanted.faces:
                results[j] = IdentityCheck(False, why="no face found to compare")
                continue
            found = [d for d, _ in self._faces_in(output, wanted.region, wanted.min_side)]
            best = min(((float(np.linalg.norm(q - reference)), face_box, reference)
                        for reference, face_box in wanted.faces
                        for q in [self.identity.descriptor_at(output, face_box), *found]), key=lambda t: t[0])
            distance, face_box, reference = best
            null_distance = None
            if needs_null(distance, self.threshold):
                null_distance = float(np.linalg.norm(self.identity.descriptor_at(null_image(), face_box) - reference))
            results[j] = IdentityCheck(True, distance, null_distance, self.threshold)
        return results
