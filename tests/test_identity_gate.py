"""Identity, not bytes (issue 13): a method that changes every pixel of a person but keeps the face
passes the byte check; the identity gate catches it, fills the person and says so in the record."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refsd_trt import failsafe
from refsd_trt.api import Anonymizer, build_gate
from refsd_trt.config import RunConfig
from refsd_trt.detection import lite_detector
from refsd_trt.eval.probe import NearIdentity
from refsd_trt.identity_gate import IdentityCheck, IdentityGate, keypoint_face_box, needs_null
from refsd_trt.presets import PRESETS

pytest.importorskip("dlib", reason="the identity gate needs the eval extra's dlib")


@pytest.fixture(scope="module")
def gate() -> IdentityGate:
    return IdentityGate()


@pytest.fixture(scope="module")
def astronaut(eval_photos):
    """The astronaut photo and its people (the embedded default's detector, with keypoints)."""
    image = eval_photos["astronaut"]
    detections = lite_detector().detect([torch.from_numpy(image.copy()).permute(2, 0, 1)])[0]
    return image, detections


def _check(gate, original, output, null, boxes, keypoints, people):
    """The gate on one image: the original's references, then the output."""
    return gate.check(output, null, gate.references(original, boxes, keypoints, people), people)


def _near_identity(gate_mode: str) -> Anonymizer:
    gate, why = build_gate(gate_mode)
    return Anonymizer(PRESETS["lite"], RunConfig(preset="lite", verify_identity=gate_mode), None, NearIdentity(),
                      gate, why)


def test_a_near_identity_method_passes_the_byte_check_but_not_the_gate(astronaut):
    image, detections = astronaut
    face_person = 0
    ungated = _near_identity("off")([image], detections=[detections])[0]
    # Before the gate: nobody is byte-identical, so everyone passed as replaced, face and all.
    assert ungated.people[face_person].fallback is None
    unchanged = failsafe.unchanged_fraction(image, ungated.image, detections.masks[face_person].numpy())
    assert unchanged < failsafe.MAX_UNCHANGED
    assert ungated.people[face_person].identity == {"verified": False,
                                                    "why": "identity verification off (verify_identity = off)"}

    gated = _near_identity("on")([image], detections=[detections])[0]
    person = gated.people[face_person]
    assert person.fallback.startswith("filled (identity still matched: face distance 0.")
    assert person.identity["verified"] and person.identity["matched"]
    assert person.identity["distance"] < 0.3
    assert person.identity["threshold"] == 0.65
    assert person.identity["null_distance"] > 0.7  # the fill itself is nobody
    # The face is gone: the output at the face is the fail-safe fill, not the noisy original.
    face = (slice(76, 167), slice(175, 266))
    assert np.abs(gated.image[face].astype(int) - image[face].astype(int)).mean() > 20


def test_the_gate_passes_a_replaced_face_and_says_why_it_could_not_check_others(gate, astronaut):
    image, detections = astronaut
    masks = detections.masks.numpy()
    null = failsafe.fill_people(image, masks, 8)
    keypoints = detections.keypoints.numpy()
    checks = _check(gate, image, null, null, detections.boxes.numpy(), keypoints, range(len(detections)))
    face = checks[0]
    # The fill is far from the face: no null could make that a match, so none was computed.
    assert face.verified and face.null is None and not face.matched
    assert face.distance > 0.7
    # The small person at the bottom right has no face to compare.
    assert any(not c.verified and c.why == "no face found to compare" for c in checks.values())


def test_a_lossy_copy_matches_and_a_different_face_does_not(gate, eval_photos, jpeg):
    image = eval_photos["astronaut"]
    box = np.array([[3.0, 19.0, 393.0, 512.0]])
    other = eval_photos.get("grace_hopper")
    null = failsafe.fill_people(image, np.zeros((0, *image.shape[:2]), bool), 0)  # no fill: the original
    copy = _check(gate, image, jpeg(image, 30), null, box, None, [0])[0]
    assert copy.verified and copy.distance < 0.25
    if other is not None:  # a different person pasted at the same place
        swapped = image.copy()
        h, w = min(other.shape[0], 512), min(other.shape[1], 512)
        swapped[:h, :w] = other[:h, :w]
        far = _check(gate, image, swapped, swapped, box, None, [0])[0]
        assert not far.matched


def test_keypoint_face_box_is_square_and_covers_the_head():
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[0] = (100, 100, 0.9)  # nose
    keypoints[1] = (110, 90, 0.9)  # left eye
    keypoints[2] = (90, 90, 0.9)  # right eye
    box = keypoint_face_box(keypoints, (50, 60, 150, 400))
    side = box[2] - box[0]
    assert side == pytest.approx(max(2.2 * 20, 340 / 7))
    assert box[3] - box[1] == pytest.approx(side)
    assert box[0] < 90 and box[2] > 110 and box[1] < 90 and box[3] > 100
    keypoints[1:, 2] = 0.1  # only the nose is trusted: no box
    assert keypoint_face_box(keypoints, (50, 60, 150, 400)) is None


def test_a_broken_gate_fills_everyone_it_should_have_checked(astronaut):
    image, detections = astronaut
    anonymizer = _near_identity("on")

    def broken(*args, **kwargs):
        raise RuntimeError("dlib exploded")

    anonymizer.gate.check = broken
    result = anonymizer([image], detections=[detections])[0]
    assert all(p.fallback == "filled (identity verification failed: RuntimeError: dlib exploded)"
               for p in result.people)


def test_the_gate_finds_the_original_faces_while_the_method_runs(astronaut):
    """The gate's look at the original needs nothing of the output: it runs beside the method, and the
    person is judged exactly as before."""
    import threading

    image, detections = astronaut
    found, seen = threading.Event(), []

    class Waiting(NearIdentity):
        def __call__(self, *args):
            seen.append(found.wait(timeout=60))  # with the references found after the method, never set
            return super().__call__(*args)

    gate, why = build_gate("on")
    references = gate.references

    def references_then_signal(*args):
        result = references(*args)
        found.set()
        return result

    gate.references = references_then_signal
    config = RunConfig(preset="lite", verify_identity="on")
    anonymizer = Anonymizer(PRESETS["lite"], config, None, Waiting(), gate, why)
    person = anonymizer([image], detections=[detections])[0].people[0]
    assert seen == [True]
    assert person.fallback.startswith("filled (identity still matched: face distance 0.")
    assert person.identity["distance"] < 0.3 and person.identity["null_distance"] > 0.7


def test_the_gate_never_searches_two_images_at_once(eval_photos):
    """dlib's detector keeps the image it scans in the object: the references found beside the method
    and the checks after it must take turns, even when the method finishes first."""
    import threading
    import time

    images = [eval_photos["astronaut"], eval_photos["grace_hopper"]]
    detections = lite_detector().detect([torch.from_numpy(i.copy()).permute(2, 0, 1) for i in images])
    anonymizer = _near_identity("on")
    identity, busy, overlaps = anonymizer.gate.identity, threading.Lock(), []
    faces = identity.faces

    def one_at_a_time(*args, **kwargs):
        if not busy.acquire(blocking=False):
            overlaps.append(threading.current_thread().name)
            return faces(*args, **kwargs)
        try:
            time.sleep(0.2)  # long enough for a fast method to finish meanwhile
            return faces(*args, **kwargs)
        finally:
            busy.release()

    identity.faces = one_at_a_time
    results = anonymizer(images, detections=detections)
    assert overlaps == []
    assert all(p.identity["verified"] for r in results for p in r.people[:1])


def test_a_gate_that_cannot_read_the_original_faces_fills_everyone(astronaut):
    image, detections = astronaut
    anonymizer = _near_identity("on")

    def broken(*args):
        raise RuntimeError("HOG exploded")

    anonymizer.gate.references = broken
    result = anonymizer([image], detections=[detections])[0]
    why = "identity verification failed: RuntimeError: HOG exploded"
    assert result.people and all(p.fallback == f"filled ({why})" for p in result.people)
    assert all(p.identity == {"verified": False, "why": why} for p in result.people)


def test_verify_identity_on_without_the_face_models_is_a_configuration_error(monkeypatch):
    monkeypatch.setattr(IdentityGate, "available", classmethod(lambda cls: (None, "dlib-bin is not installed")))
    with pytest.raises(ValueError, match="verify_identity = on, but dlib-bin is not installed"):
        build_gate("on")
    gate, why = build_gate("auto")
    assert gate is None and why == "identity verification unavailable: dlib-bin is not installed"
    with pytest.raises(ValueError, match="verify_identity must be auto, on or off"):
        RunConfig(verify_identity="maybe")


@pytest.mark.parametrize("distance, null, matched", [
    (0.134, 0.638, True),  # noise on a 44 px bus face
    (0.589, 0.667, True),  # a weak blur: within dlib's threshold and well under the fill
    (0.700, 0.667, False),  # lite's avatar on the same face
    (0.195, 0.530, True),  # noise on Zidane's tilted face, where the fill itself sits at 0.53
    (0.426, 0.494, False),  # an avatar on that face: absolute 0.43, but no closer than the fill's 0.49
    (0.323, 0.259, False),  # a place the descriptor cannot read at all
])
def test_a_match_is_judged_against_the_fill_of_the_same_place(distance, null, matched):
    from refsd_trt.identity_gate import IdentityCheck

    assert IdentityCheck(True, distance, null).matched is matched


def test_the_null_fill_is_made_only_for_a_close_call(gate, eval_photos, jpeg):
    """The null (a whole-image inpaint and a descriptor) decides only distances under the threshold."""
    image = eval_photos["astronaut"]
    box = np.array([[3.0, 19.0, 393.0, 512.0]])
    calls = []

    def null():
        calls.append(1)
        face = np.zeros((1, *image.shape[:2]), bool)
        face[0, 60:180, 160:280] = True  # the astronaut's face
        return failsafe.fill_people(image, face, 0)

    grey = np.full_like(image, 128)
    far = _check(gate, image, grey, null, box, None, [0])[0]
    assert far.verified and far.distance >= far.threshold and far.null is None and not far.matched
    assert calls == []
    close = _check(gate, image, jpeg(image, 30), null, box, None, [0])[0]
    assert close.distance < 0.25 and close.null > 0.6 and close.matched
    assert calls == [1]



def test_no_null_turns_a_distance_at_the_threshold_into_a_match():
    """Why the gate may skip the null fill above the threshold: with any null it would not match."""
    for distance in (0.65, 0.66, 0.8, 1.2):
        assert not needs_null(distance, 0.65)
        assert not any(IdentityCheck(True, distance, float(null)).matched for null in np.linspace(0.0, 2.0, 401))
    assert needs_null(0.64, 0.65) and IdentityCheck(True, 0.2, 0.7).matched
