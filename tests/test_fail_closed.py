"""Holes in the privacy guarantee (issue 13) closed: a detector that outputs NaN is a failed
detection, not an empty scene; detections given without masks are removed whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refsd_trt import failsafe
from refsd_trt.api import Anonymizer, DetectionFailed, covering
from refsd_trt.types import PersonDetections

BOX = (70, 40, 130, 220)


def _person(height=256, width=192) -> np.ndarray:
    image = np.full((height, width, 3), 60, np.uint8)
    x0, y0, x1, y1 = BOX
    image[y0:y1, x0:x1] = 240
    return image


def _box_only(height=256, width=192, source="box") -> PersonDetections:
    return PersonDetections(torch.tensor([[float(v) for v in BOX]]), torch.tensor([0.9]),
                            torch.zeros((1, height, width), dtype=torch.bool), None, source)


def _box_mask(height=256, width=192) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = BOX
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture(scope="module")
def lite() -> Anonymizer:
    return Anonymizer.from_preset("lite")


def test_a_detector_that_outputs_nan_is_a_failed_detection(lite, monkeypatch):
    engine = lite.detector.runner.engine
    real = engine.run

    def broken(feeds):
        out = real(feeds)
        return {name: torch.full_like(t, float("nan")) if name == "output0" else t for name, t in out.items()}

    monkeypatch.setattr(engine, "run", broken)
    with pytest.raises(DetectionFailed, match="non-finite"):
        lite([_person()])


def test_given_detections_with_non_finite_boxes_are_refused(lite):
    given = _box_only()
    given.boxes[0, 0] = float("nan")
    with pytest.raises(ValueError, match="image 0: non-finite"):
        lite([_person()], detections=[given])


@pytest.mark.parametrize("source", ["box", "segmentation"])
def test_box_only_detections_are_covered_whole(source):
    covered = covering(_box_only(source=source))
    assert np.array_equal(covered.masks[0].numpy(), _box_mask())


def test_a_partial_mask_from_a_box_detector_grows_to_its_box():
    given = _box_only()
    given.masks[0, 100:120, 90:110] = True
    assert np.array_equal(covering(given).masks[0].numpy(), _box_mask())
    seg = _box_only(source="segmentation")
    seg.masks[0, 100:120, 90:110] = True  # a real segmentation mask is kept as it is
    assert int(covering(seg).masks[0].sum()) == 400


def test_the_inpaint_method_removes_a_person_given_without_a_mask():
    """Before: the inpaint method painted and checked masks only, so an empty mask left the person
    untouched and recorded as anonymized."""
    anonymizer = Anonymizer.from_preset("tiny", method="inpaint", backend="torch", steps=2, device="cpu")
    image = _person()
    result = anonymizer([image], detections=[_box_only()])[0]
    assert failsafe.unchanged_fraction(image, result.image, _box_mask()) < 0.05


def test_a_preset_that_cannot_start_is_one_line_and_exit_2(tmp_path, capsys):
    from refsd_trt.cli import main

    photo = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(_person()).save(photo)
    code = main(["anonymize", str(photo), "-o", str(tmp_path / "out"), "--preset", "refsd", "-q"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ModelNotFound: yolov8x-") and "no such weights file" in err[0]


class _FailsOnce:
    """The real anonymizer, except that its first call raises an unexpected error."""

    def __init__(self, real: Anonymizer):
        self.real, self.calls = real, 0
        self.config, self.engines = real.config, real.engines

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise KeyError("injected bug")
        return self.real(*args, **kwargs)


def test_an_unexpected_error_fails_that_batch_by_name_and_the_run_goes_on(lite, tmp_path):
    from PIL import Image

    from refsd_trt.runner import Runner

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(_person()).save(folder / name)
    fake = _FailsOnce(lite)
    summary = Runner(lambda: fake, tmp_path / "out", batch_size=1, progress=False).run([str(folder)])
    assert summary.failed == 1 and summary.ok == 1
    assert summary.errors == [f"{folder / 'a.png'}: KeyError: 'injected bug'"]
    assert (tmp_path / "out" / "b.png").is_file() and not (tmp_path / "out" / "a.png").exists()
