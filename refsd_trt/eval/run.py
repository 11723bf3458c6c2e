"""One evaluation run: read the originals, find what each holds once (shared people for the methods;
faces, people, keypoints and appearance for the judges), produce every method's outputs, and score
each output against its original.

The judges never share a model with what they judge: faces are dlib's, people YOLOv8n's, keypoints
MediaPipe BlazePose's, appearance an ImageNet MobileNetV2's, while the methods get their people from
the embedded default's detector (``independence`` compares the files).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from refsd_trt.detection.masks import removal_masks
from refsd_trt.eval.appearance import AppearanceEmbedder, person_crop
from refsd_trt.eval.background import BackgroundScore, background_score, mean_ssim, outside, pooled_psnr
from refsd_trt.eval.faces import Face, FaceIdentity, FaceMatch, match_faces
from refsd_trt.eval.methods import Method, Shared
from refsd_trt.eval.people import People, PersonKept, PoseEvaluator, match_people
from refsd_trt.eval.retrieval import retrieval
from refsd_trt.failsafe import dilated
from refsd_trt.io import InputError, discover_inputs, read_image
from refsd_trt.io.errors import one_line

log = logging.getLogger(__name__)


@dataclass
class Subject:
    """One original and what the judges and the shared detector found in it, computed once."""

    name: str  # its path relative to the argument it came from
    path: Path
    pixels: np.ndarray  # HxWx3 uint8 RGB
    shared: Shared
    outside: np.ndarray  # (H, W) bool: background, where no dilated person mask reaches
    faces: list[Face]
    people: People
    appearance: np.ndarray  # (len(people), d) embeddings of the original's people crops
    face_offset: int = 0  # where its faces and people start in the run's galleries
    people_offset: int = 0


@dataclass
class Judges:
    """The independent evaluator models, built once per run."""

    faces: FaceIdentity
    pose: PoseEvaluator
    appearance: AppearanceEmbedder

    @classmethod
    def load(cls) -> Judges:
        return cls(FaceIdentity(), PoseEvaluator(), AppearanceEmbedder())


@dataclass
class Scores:
    """Everything measured on one method's outputs."""

    method: Method
    faces: list[tuple[int, FaceMatch, int]] = field(default_factory=list)  # (subject, match, gallery index)
    people: list[PersonKept] = field(default_factory=list)
    appearance: list[tuple[np.ndarray, int]] = field(default_factory=list)  # (query, gallery index)
    background: list[BackgroundScore] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    outputs: dict[int, Path] = field(default_factory=dict)  # subject index -> written output
    seconds: float = 0.0

    def summary(self, face_gallery: np.ndarray, appearance_gallery: np.ndarray) -> dict:
        faces = [m for _, m, _ in self.faces]
        face_ids = retrieval(np.stack([m.query for m in faces]) if faces else np.zeros((0, 128)), face_gallery,
                             [t for _, _, t in self.faces])
        looks = retrieval(np.stack([q for q, _ in self.appearance]) if self.appearance
                          else np.zeros((0, appearance_gallery.shape[1])), appearance_gallery,
                          [t for _, t in self.appearance], metric="cosine")
        posed = [p.oks for p in self.people if p.oks is not None]
        return {
            "kind": self.method.kind, "description": self.method.description,
            "anonymizes": self.method.anonymizes,
            "identity_leak_rate": _mean([m.leaked for m in faces]),
            "face_min_distance_mean": _mean([m.distance for m in faces]),
            "face_r1": face_ids.r1, "face_r5": face_ids.r5, "face_map": face_ids.mean_ap,
            "appearance_r1": looks.r1, "appearance_map": looks.mean_ap,
            "people_kept": _mean([p.kept for p in self.people]),
            "pose_oks": _mean(posed),
            "background_psnr": pooled_psnr(self.background),
            "background_ssim": mean_ssim(self.background),
            "faces_still_detected": _mean([m.still_detected for m in faces]),
            "counts": {"images": len(self.background), "faces": len(faces), "face_gallery": face_ids.gallery,
                       "people": len(self.people), "people_with_keypoints": len(posed),
                       "appearance_gallery": looks.gallery, "failures": len(self.failures)},
            "chance": {"face_r1": face_ids.chance_r1, "appearance_r1": looks.chance_r1},
            "failures": self.failures,
            "seconds": round(self.seconds, 2),
        }

    def worst_face(self) -> tuple[int, FaceMatch] | None:
        """The most identifiable face this method left (smallest distance), if any face was judged."""
        worst = min(self.faces, key=lambda judged: judged[1].distance, default=None)
        return worst[:2] if worst else None


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def read_originals(inputs: Sequence[str]) -> tuple[list[tuple[str, Path, np.ndarray]], list[str]]:
    """(name, path, pixels) per readable image, and one line per input that is not one."""
    found = discover_inputs(inputs)
    errors = [str(e) for e in found.errors]
    originals = []
    for item in found.items:
        try:
            loaded = read_image(item.path)
        except InputError as exc:
            errors.append(str(exc))
            continue
        name = str(item.relative) if str(item.relative) != "." else item.path.name
        originals.append((name, item.path, loaded.pixels.permute(1, 2, 0).numpy()))
    errors += [f"{p}: not an image, skipped" for p in found.ignored]
    return originals, errors


HEAD_KEYPOINTS = (0, 1, 2)  # COCO nose, left eye, right eye


def person_faces(faces: Sequence[Face], people: People, min_conf: float = 0.5) -> list[Face]:
    """The faces that are people's faces: a confident nose or eye of the pose model lies inside the
    face box. Two independent models must agree, because dlib's HOG also fires on printed and
    patterned things (the astronaut's mission patch), and an anonymized non-face is not a privacy
    figure."""
    heads = people.keypoints[:, HEAD_KEYPOINTS].reshape(-1, 3)
    heads = heads[heads[:, 2] >= min_conf]
    return [f for f in faces if ((heads[:, 0] >= f.box[0]) & (heads[:, 0] < f.box[2])
                                 & (heads[:, 1] >= f.box[1]) & (heads[:, 1] < f.box[3])).any()]


def dilated_removal_masks(detections, dilate_px: int) -> np.ndarray:
    """(n, H, W) bool: what the baselines remove of each person (``removal_masks``, as the lite
    method removes), dilated."""
    masks = removal_masks(detections).numpy()
    return np.stack([dilated(m, dilate_px) for m in masks]) if len(masks) else masks


def find_subjects(originals: Sequence[tuple[str, Path, np.ndarray]], judges: Judges, detector, dilate_px: int,
                  ) -> list[Subject]:
    """Shared people (``detector``: a refsd_trt PersonDetector on the CPU) and the judges' view of each original."""
    subjects = []
    for name, path, pixels in originals:
        (detections,) = detector.detect([torch.from_numpy(pixels).permute(2, 0, 1).contiguous()])
        masks = dilated_removal_masks(detections, dilate_px)
        shared = Shared(detections, masks, detections.boxes.numpy().astype(np.float32))
        people = judges.pose([pixels])[0]
        crops = [person_crop(pixels, box) for box in people.boxes]
        region = outside(detections.masks.numpy(), dilate_px, pixels.shape[:2])
        subjects.append(Subject(name, path, pixels, shared, region, person_faces(judges.faces.faces(pixels), people),
                                people, judges.appearance.embed(crops)))
    return subjects


def galleries(subjects: Sequence[Subject]) -> tuple[np.ndarray, np.ndarray]:
    """Every original face's descriptor and every original person's appearance, in subject order;
    sets each subject's offsets into them."""
    faces, people = [], 0
    for subject in subjects:
        subject.face_offset, subject.people_offset = len(faces), people
        faces += [face.descriptor for face in subject.faces]
        people += len(subject.people)
    face_gallery = np.stack(faces) if faces else np.zeros((0, 128), dtype=np.float32)
    looks = [s.appearance for s in subjects if len(s.appearance)]
    appearance_gallery = np.concatenate(looks) if looks else np.zeros((0, 1280), dtype=np.float32)
    return face_gallery, appearance_gallery


def score_method(method: Method, subjects: Sequence[Subject], judges: Judges, out_dir: Path | None) -> Scores:
    """Produce ``method``'s outputs for every subject and judge each against its original."""
    from refsd_trt.io import write_image

    scores = Scores(method)
    start = time.perf_counter()
    try:
        produced = method.produce([s.pixels for s in subjects], [s.shared for s in subjects])
    except Exception as exc:  # noqa: BLE001 -- one method failing must not end the comparison
        produced = [f"{method.name} failed: {one_line(exc)}"] * len(subjects)
    scores.seconds = time.perf_counter() - start
    for i, (subject, output) in enumerate(zip(subjects, produced)):
        if isinstance(output, str):
            scores.failures.append(output)
            continue
        if out_dir is not None and method.kind != "reference":
            target = (out_dir / method.name / subject.name).with_suffix(".png")
            scores.outputs[i] = write_image(torch.tensor(output).permute(2, 0, 1), target)
        matches = match_faces(judges.faces, subject.faces, output)  # one per original face, in order
        scores.faces += [(i, m, subject.face_offset + k) for k, m in enumerate(matches)]
        scores.people += match_people(subject.people, judges.pose([output])[0])
        crops = [person_crop(output, box) for box in subject.people.boxes]
        scores.appearance += [(q, subject.people_offset + k) for k, q in enumerate(judges.appearance.embed(crops))]
        scores.background.append(background_score(subject.pixels, output, subject.outside))
    return scores
