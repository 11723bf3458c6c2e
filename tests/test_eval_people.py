"""People and pose kept: COCO OKS on known numbers, and the independent judges (YOLOv8n people, BlazePose
keypoints) on real photos."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from refsd_trt.eval.models import MODELS, EvalModelMissing
from refsd_trt.eval.people import COCO_SIGMAS, BlazePose, People, PoseEvaluator, match_people, oks


def _person(x0=100.0, y0=50.0, w=100.0, h=200.0, conf=0.9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    xy = np.stack([rng.uniform(x0, x0 + w, 17), rng.uniform(y0, y0 + h, 17)], axis=1)
    kpts = np.concatenate([xy, np.full((17, 1), conf)], axis=1).astype(np.float32)
    return np.array([x0, y0, x0 + w, y0 + h], dtype=np.float32), kpts


def test_oks_is_one_for_identical_keypoints_and_follows_the_coco_formula():
    _, kpts = _person()
    assert oks(kpts, kpts, 100 * 200) == 1.0
    moved = kpts.copy()
    moved[:, 0] += 10  # every keypoint 10 px off
    expected = np.mean(np.exp(-100 / (2 * 20000 * (2 * COCO_SIGMAS) ** 2)))
    assert oks(kpts, moved, 20000) == pytest.approx(expected, rel=1e-6)
    assert 0.0 < expected < 1.0


def test_oks_counts_only_visible_original_keypoints():
    _, kpts = _person()
    kpts[5:, 2] = 0.1  # only the face points are confident
    moved = kpts.copy()
    moved[5:, :2] += 500  # the invisible ones far off: no effect
    assert oks(kpts, moved, 20000) == 1.0
    kpts[:, 2] = 0.0
    assert oks(kpts, kpts, 20000) is None


def test_match_people_keeps_overlapping_people_and_loses_the_rest():
    box_a, kpts_a = _person()
    box_b, kpts_b = _person(x0=400)
    original = People(np.stack([box_a, box_b]), np.stack([kpts_a, kpts_b]))
    shifted = box_a + np.array([10, 0, 10, 0], dtype=np.float32)  # IoU 90/110 with the first person
    output = People(shifted[None], kpts_a[None])
    first, second = match_people(original, output)
    assert first.kept and first.iou == pytest.approx(90 / 110, rel=1e-5) and first.oks == 1.0
    assert not second.kept and second.iou == 0.0 and second.oks == 0.0
    empty = People(np.zeros((0, 4), np.float32), np.zeros((0, 17, 3), np.float32))
    assert [p.kept for p in match_people(original, empty)] == [False, False]
    assert match_people(empty, output) == []


@pytest.fixture(scope="module")
def pose():
    return PoseEvaluator()


def test_the_judge_uses_mediapipes_files_without_importing_mediapipe(pose):
    # mediapipe needs a protobuf older than onnx's: importing it would break or be broken by onnx.
    assert (pose.detector_weights.name, pose.landmark_weights.name) == ("pose_detection.tflite",
                                                                        "pose_landmark_full.tflite")
    assert "mediapipe" not in sys.modules


def test_judge_on_real_photos_keeps_everyone_in_an_identical_output(pose, sample_images):
    photos = dict(sample_images)
    bus, zidane = photos["bus"], photos["zidane"]
    found_bus, found_zidane = pose([bus, zidane])
    assert len(found_bus) == 4 and len(found_zidane) == 2
    assert found_bus.boxes[:, 0].min() < 1  # the man cut off at bus.jpg's left edge
    again = pose([bus])[0]  # the judge is deterministic: the same image gives the same people and poses
    kept = match_people(found_bus, again)
    assert all(p.kept and p.iou == pytest.approx(1.0) for p in kept)
    assert all(p.oks is None or p.oks == 1.0 for p in kept)
    assert sum(p.oks is not None for p in kept) >= 3


def test_judge_finds_nobody_where_people_are_masked_out(pose, sample_images):
    zidane = dict(sample_images)["zidane"].copy()
    found = pose([zidane])[0]
    for x0, y0, x1, y1 in found.boxes.round().astype(int):
        zidane[max(0, y0 - 8):y1 + 8, max(0, x0 - 8):x1 + 8] = 128
    after = match_people(found, pose([zidane])[0])
    assert [p.kept for p in after] == [False, False]
    assert all(p.oks == 0.0 for p in after)


# Each photo's one face as dlib's HOG finds it (x0, y0, x1, y1).
UPPER_BODIES = {"astronaut": (175, 76, 266, 167), "grace_hopper": (180, 139, 367, 326)}


@pytest.mark.parametrize("name", UPPER_BODIES)
def test_keypoints_land_on_the_face_and_the_shoulders_below_it(pose, name):
    """Frontal upper bodies, cut off by the frame: the decoding (ROI, landmark order, COCO mapping,
    back to pixels) is right when the nose and eyes fall in the face and the shoulders below it, the
    person's left on the image's right. A portrait also needs the detector's ROI: on the square of
    the visible box alone, Grace Hopper's keypoints shrink into a small whole body above her face."""
    from PIL import Image

    from refsd_trt.samples import sample_image_paths

    (people,) = pose([np.asarray(Image.open(sample_image_paths((name,))[0]).convert("RGB"))])
    assert len(people) == 1
    kpts = people.keypoints[0]
    x0, y0, x1, y1 = UPPER_BODIES[name]
    for nose_or_eye in kpts[:3]:
        assert x0 <= nose_or_eye[0] <= x1 and y0 <= nose_or_eye[1] <= y1 and nose_or_eye[2] > 0.9
    assert kpts[1, 1] < kpts[0, 1] and kpts[2, 1] < kpts[0, 1]  # eyes above the nose
    left_shoulder, right_shoulder = kpts[5], kpts[6]
    assert min(left_shoulder[1], right_shoulder[1]) > y1 and min(left_shoulder[2], right_shoulder[2]) > 0.9
    assert left_shoulder[0] > (x0 + x1) / 2 > right_shoulder[0] and kpts[1, 0] > kpts[2, 0]


def test_a_broken_litert_is_one_line_naming_the_eval_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # importing it raises ImportError
    with pytest.raises(EvalModelMissing, match=r"ai-edge-litert.*refsd-trt\[eval\]") as missing:
        BlazePose(MODELS["blazepose-detector"].path(), MODELS["blazepose-full"].path())
    assert len(str(missing.value).splitlines()) == 1
