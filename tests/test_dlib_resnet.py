"""dlib's face descriptor network read into torch gives dlib's own descriptors.

Measured (dlib 20, torch CPU): on the six HOG faces of the packaged photos the torch descriptors differ
from ``compute_face_descriptor``'s by at most 2.7e-7 per component and pairwise distances by 3e-7;
random chips 4.3e-7. The tolerance below, 1e-5, is ~40x that and still 1000x below anything that
matters to the 0.6 same-person threshold; a wrong padding, stride, channel order or normalisation
moves components by 1e-2 or more.
"""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
import torch

from refsd_trt.eval.faces import FACE_MATCH, FaceIdentity, _rgb
from refsd_trt.eval.models import EvalModelMissing, model_path

TOL = 1e-5


@pytest.fixture(scope="module")
def dlib():
    return pytest.importorskip("dlib", reason="dlib (dlib-bin) is not installed")


@pytest.fixture(scope="module")
def resnet_file(dlib):
    try:
        return model_path("dlib-resnet-face")
    except EvalModelMissing as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def reference(dlib, resnet_file):
    """dlib's own network: the reference only, the product runs the torch one."""
    return dlib.face_recognition_model_v1(str(resnet_file))


@pytest.fixture(scope="module")
def identity(resnet_file) -> FaceIdentity:
    return FaceIdentity()


@pytest.fixture(scope="module")
def faces(identity, reference, eval_photos):
    """(photo, HOG score, torch descriptor, dlib descriptor) for every face HOG finds in the packaged photos."""
    names = [n for n in ("zidane", "grace_hopper", "astronaut", "bus") if n in eval_photos]
    if not names:
        pytest.skip("needs the packaged photos of scikit-image, matplotlib or ultralytics")
    found = []
    for name in names:
        image = _rgb(eval_photos[name])
        for rect, score in zip(*identity._detector.run(image, 1, 0.0)[:2]):
            shape = identity._shape(image, rect)
            dlib_descriptor = np.asarray(reference.compute_face_descriptor(image, shape), np.float32)
            found.append((name, score, identity._descriptor(image, rect), dlib_descriptor))
    return found


def test_real_faces_match_dlib(faces):
    assert len(faces) >= 4
    for name, _, ours, theirs in faces:
        assert ours.shape == (128,) and ours.dtype == np.float32
        assert np.abs(ours - theirs).max() < TOL, name
        assert np.linalg.norm(theirs) > 0.5  # a real descriptor, not zeros matching zeros


def test_distances_between_people_match_dlib(faces):
    # one face per photo, the strongest (HOG also fires weakly on the astronaut's mission patch)
    people = {name: (ours, theirs) for name, _, ours, theirs in sorted(faces, key=lambda f: f[1])}
    assert len(people) >= 3
    for (a, (ours_a, theirs_a)), (b, (ours_b, theirs_b)) in itertools.combinations(people.items(), 2):
        expected = np.linalg.norm(theirs_a - theirs_b)
        assert expected > FACE_MATCH, (a, b)  # different people, by dlib's threshold
        assert abs(np.linalg.norm(ours_a - ours_b) - expected) < TOL, (a, b)


def test_random_chips_batch_match_dlib(identity, reference):
    chips = np.random.default_rng(0).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    with torch.inference_mode():
        ours = identity._resnet(torch.from_numpy(chips)).numpy()
    theirs = np.stack([np.asarray(reference.compute_face_descriptor(c), np.float32) for c in chips])
    assert ours.shape == (3, 128)
    assert np.abs(ours - theirs).max() < TOL


def test_truncated_file_names_the_file(resnet_file, tmp_path):
    from refsd_trt.eval.dlib_resnet import DlibModelError, read_dlib_resnet

    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(resnet_file.read_bytes()[:1_000_000])
    with pytest.raises(DlibModelError, match="truncated.dat.*ends early"):
        read_dlib_resnet(truncated)


def test_corrupt_or_other_file_names_the_file(resnet_file, tmp_path):
    from refsd_trt.eval.dlib_resnet import DlibModelError, read_dlib_resnet

    data = resnet_file.read_bytes()
    corrupt = tmp_path / "corrupt.dat"
    corrupt.write_bytes(data[:4] + b"LOSS" + data[8:])  # the loss layer's name mangled
    with pytest.raises(DlibModelError, match="corrupt.dat.*loss layer"):
        read_dlib_resnet(corrupt)
    landmarks = tmp_path / "landmarks.dat"  # another dlib file
    shutil.copy(model_path("dlib-5-landmarks"), landmarks)
    with pytest.raises(DlibModelError, match="landmarks.dat"):
        read_dlib_resnet(landmarks)
    longer = tmp_path / "longer.dat"
    longer.write_bytes(data + b"\0")
    with pytest.raises(DlibModelError, match="longer.dat.*1 bytes left"):
        read_dlib_resnet(longer)


def test_rgb_keeps_a_contiguous_image_without_copying():
    image = np.zeros((64, 48, 3), np.uint8)
    assert _rgb(image) is image or np.shares_memory(_rgb(image), image)
    with pytest.raises(ValueError):
        _rgb(np.zeros((4, 4, 3), np.float32))
