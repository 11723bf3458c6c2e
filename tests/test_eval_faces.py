"""Face identity known answers on real photos that ship inside installed packages.

Measured with dlib 20 (HOG, upsample 1): an unchanged output is distance 0; JPEG q30 0.12-0.30;
a Gaussian blur of the enlarged face region rises with sigma (sigma 15: 0.69-0.83); a grey fill
0.68-0.83; different people 0.69-0.85. dlib's same-person threshold is 0.6, so each assertion
below leaves a margin of at least ~0.07 and fails if the descriptor, the alignment or the matching
broke (a constant descriptor leaks everything; a random one leaks nothing).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from refsd_trt.eval.faces import FACE_MATCH, Face, FaceIdentity, FaceMatch, iou, match_faces
from refsd_trt.eval.models import EvalModelMissing
from refsd_trt.eval.retrieval import retrieval


@pytest.fixture(scope="module")
def identity() -> FaceIdentity:
    try:
        return FaceIdentity()
    except EvalModelMissing as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def photos(eval_photos) -> dict[str, np.ndarray]:
    if not {"astronaut", "grace_hopper", "bus", "zidane"} <= set(eval_photos):
        pytest.skip("needs the packaged photos of scikit-image, matplotlib and ultralytics")
    return {"astronaut": eval_photos["astronaut"], "hopper": eval_photos["grace_hopper"],
            "bus": eval_photos["bus"], "zidane": eval_photos["zidane"]}


@pytest.fixture(scope="module")
def detected(identity, photos) -> dict[str, list[Face]]:
    return {name: identity.faces(image) for name, image in photos.items()}


@pytest.fixture(scope="module")
def people(detected) -> dict[str, list[Face]]:
    """The real faces: HOG at upsample 1 also fires (weakly, 0.12) on the astronaut's mission patch."""
    faces = dict(detected)
    faces["astronaut"] = [max(detected["astronaut"], key=lambda f: f.score)]
    return faces


def _face_region(image: np.ndarray, box, grow: float = 0.5) -> tuple[int, int, int, int]:
    """The face box enlarged by ``grow`` of its size on every side, clipped: hair, ears and chin too."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (max(int(x1 - grow * w), 0), max(int(y1 - grow * h), 0),
            min(int(x2 + grow * w), image.shape[1]), min(int(y2 + grow * h), image.shape[0]))




def _blur_faces(image: np.ndarray, faces: list[Face], sigma: float) -> np.ndarray:
    out = image.copy()
    for face in faces:
        x1, y1, x2, y2 = _face_region(image, face.box)
        out[y1:y2, x1:x2] = cv2.GaussianBlur(image[y1:y2, x1:x2], (0, 0), sigma)
    return out


def _mask_faces(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    out = image.copy()
    for face in faces:
        x1, y1, x2, y2 = _face_region(image, face.box)
        out[y1:y2, x1:x2] = 128
    return out


@pytest.fixture(scope="module")
def judged(identity, photos, people, jpeg):
    """``judged(kind, name)``: the real faces of a photo matched against one altered copy, computed once."""
    alter = {
        "same": lambda name: photos[name].copy(),
        "jpeg": lambda name: jpeg(photos[name], 30),
        "mask": lambda name: _mask_faces(photos[name], people[name]),
    }
    cache: dict[tuple[str, str], list[FaceMatch]] = {}

    def judge(kind: str, name: str) -> list[FaceMatch]:
        if (kind, name) not in cache:
            cache[kind, name] = match_faces(identity, people[name], alter[kind](name))
        return cache[kind, name]

    return judge


def _near(box, expected, at_least: float = 0.8) -> bool:
    return iou(box, expected) >= at_least


def test_hog_finds_the_known_faces(detected, people, identity):
    assert [len(detected[n]) for n in ("hopper", "bus", "zidane")] == [1, 2, 1]
    assert _near(people["astronaut"][0].box, (175, 76, 266, 167))
    assert _near(people["hopper"][0].box, (180, 139, 367, 326))
    assert _near(people["zidane"][0].box, (906, 116, 1062, 271))
    assert sorted(_near(f.box, (117, 420, 161, 464)) or _near(f.box, (271, 430, 315, 474))
                  for f in detected["bus"]) == [True, True]
    for face in (f for faces in detected.values() for f in faces):
        assert face.descriptor.shape == (128,) and face.descriptor.dtype == np.float32
        assert np.isfinite(face.score)
        assert np.all(np.isfinite(face.descriptor)) and np.linalg.norm(face.descriptor) > 0.5
    import skimage.data

    camera = skimage.data.camera()  # a cameraman too small and turned for HOG: no face
    assert identity.faces(camera) == [] and identity.faces(np.stack([camera] * 3, axis=-1)) == []


def test_large_faces_are_found_at_a_reduced_scale(identity, photos, detected):
    # Enlarged 1.5x, Grace Hopper's face is 280 px and Zidane's 230: searched for faces of at least
    # 100 px, HOG runs on the image scaled by 0.8 without upsampling (8 times fewer pixels), and finds
    # the same face, its descriptor taken at full resolution (measured: IoU 0.93-0.98, distance
    # 0.04-0.08, where a JPEG of the same face is 0.12-0.30 away).
    for name in ("hopper", "zidane"):
        image = cv2.resize(photos[name], None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)
        (full,), (fast,) = identity.faces(image), identity.faces(image, min_side=100)
        assert _near(fast.box, full.box, 0.9)
        assert np.linalg.norm(fast.descriptor - full.descriptor) < 0.12
    # Bus's faces are 44 px: wanting faces of at least 100 px finds none, at least 30 px (under the
    # window: upsampled as before) both.
    assert identity.faces(photos["bus"], min_side=100) == []
    assert len(identity.faces(photos["bus"], min_side=30)) == 2


def test_identical_output_leaks_every_face(identity, photos, detected):
    for name, image in photos.items():
        matches = match_faces(identity, detected[name], image.copy())
        assert len(matches) == len(detected[name]) >= 1
        for match in matches:
            assert isinstance(match, FaceMatch)
            assert match.distance < 1e-4 and match.leaked and match.still_detected
            # The query alone (no detector) recovers the original's descriptor.
            assert np.linalg.norm(match.query - match.face.descriptor) < 1e-4


def test_different_people_are_apart(people):
    faces = [f for name in ("astronaut", "hopper", "bus", "zidane") for f in people[name]]
    assert len(faces) == 5
    d = np.linalg.norm(np.stack([f.descriptor for f in faces])[:, None] - np.stack([f.descriptor for f in faces]),
                       axis=-1)
    off = d[~np.eye(len(faces), dtype=bool)]
    assert off.min() > FACE_MATCH + 0.05, off.min()  # measured 0.685


def test_jpeg_keeps_the_identity(photos, judged):
    for name in photos:
        for match in judged("jpeg", name):
            assert 0.02 < match.distance < 0.45, (name, match.distance)  # measured 0.12-0.30
            assert match.leaked and match.still_detected


def test_mask_out_leaks_nothing(photos, judged):
    for name in photos:
        for match in judged("mask", name):
            assert match.distance > FACE_MATCH + 0.05, (name, match.distance)  # measured 0.68-0.83
            assert not match.leaked and not match.still_detected


def test_blur_lands_between_jpeg_and_masking(identity, photos, people, judged):
    """Distance grows with blur strength; a mild blur still leaks, a strong one does not."""
    for name in ("astronaut", "hopper", "zidane"):  # faces of 90-190 px; bus.jpg's 44 px faces saturate early
        image, faces = photos[name], people[name]
        jpeg = judged("jpeg", name)[0].distance
        blurred = [match_faces(identity, faces, _blur_faces(image, faces, s))[0].distance for s in (4, 8, 15)]
        assert jpeg < blurred[0] < blurred[1] < blurred[2], (name, jpeg, blurred)
        assert blurred[0] > jpeg + 0.15 and blurred[0] < FACE_MATCH, (name, blurred)  # measured 0.34-0.52
        assert blurred[2] > FACE_MATCH + 0.05, (name, blurred)  # measured 0.75-0.83


def test_face_swap_is_still_a_face_but_not_the_person(identity, photos, people):
    """A replaced person still has a face where the old one was (realism), and it is someone else."""
    astronaut, hopper = photos["astronaut"], photos["hopper"]
    old, new = people["astronaut"][0], people["hopper"][0]
    x1, y1, x2, y2 = _face_region(astronaut, old.box, 0.2)
    h1, v1, h2, v2 = _face_region(hopper, new.box, 0.2)
    swapped = astronaut.copy()
    swapped[y1:y2, x1:x2] = cv2.resize(hopper[v1:v2, h1:h2], (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
    (match,) = match_faces(identity, [old], swapped)
    assert match.still_detected and not match.leaked
    assert match.distance > FACE_MATCH + 0.03, match.distance  # measured 0.676
    assert np.linalg.norm(match.query - new.descriptor) < 0.3  # the query sees Grace Hopper (0.13)


def test_face_retrieval_over_a_gallery_of_people(people, judged):
    names = ("astronaut", "hopper", "bus", "zidane")
    gallery = np.stack([f.descriptor for n in names for f in people[n]])
    truth = list(range(len(gallery)))

    def queries(kind: str) -> np.ndarray:
        return np.stack([m.query for n in names for m in judged(kind, n)])

    same = retrieval(queries("same"), gallery, truth)
    assert (same.r1, same.r5, same.mean_ap, same.queries, same.gallery) == (1.0, 1.0, 1.0, 5, 5)
    assert same.chance_r1 == pytest.approx(0.2)
    jpeg = retrieval(queries("jpeg"), gallery, truth)
    assert jpeg.r1 == 1.0
    masked = retrieval(queries("mask"), gallery, truth)
    assert masked.r1 <= 0.4 and masked.mean_ap < 0.6  # measured R@1 0.2 (chance), mAP 0.46


def test_no_original_faces_no_matches(identity, photos):
    assert match_faces(identity, [], photos["hopper"]) == []


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
