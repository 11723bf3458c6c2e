"""The product's promises, end to end on the embedded default (lite) and the tiny preset:
every detected person replaced, fail-closed under a fault in each stage, bad inputs named one per
line while the rest goes on, metadata stripped, inputs untouched, atomic outputs, resume."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_io_craft import SECRET, save_with_metadata

from refsd_trt import failsafe
from refsd_trt.api import AnonymizedImage, Anonymizer, DetectionFailed
from refsd_trt.cli import main
from refsd_trt.io import metadata_report
from refsd_trt.pipelines.avatars import AvatarCrops
from refsd_trt.types import PersonDetections

REPLACED = 0.05  # at most this fraction of a person's mask may be byte-identical to the input


def _photos(sample_images) -> list[np.ndarray]:
    found = dict(sample_images)
    bus = found["bus"]
    return [found["astronaut"], np.ascontiguousarray(bus[300:940, 0:640])]


@pytest.fixture(scope="module")
def lite() -> Anonymizer:
    return Anonymizer.from_preset("lite")


def _assert_everyone_replaced(images: list[np.ndarray], results: list[AnonymizedImage], lite: Anonymizer):
    detections = lite.detector.detect([torch.from_numpy(i.copy()).permute(2, 0, 1) for i in images])
    for image, result, det in zip(images, results, detections):
        assert result.image.shape == image.shape
        assert len(result.people) == len(det) >= 1
        for mask in det.masks.numpy():
            assert failsafe.unchanged_fraction(image, result.image, mask) < REPLACED


def test_lite_replaces_every_detected_person(lite, sample_images):
    images = _photos(sample_images)
    results = lite(images)
    _assert_everyone_replaced(images, results, lite)
    assert all(p.fallback is None for r in results for p in r.people)
    assert {"detect", "remove", "render", "merge"} <= set(results[0].timings)
    person = results[0].people[0]
    assert 0 < person.coverage < 1 and person.prompt and person.seed == lite([images[0]])[0].people[0].seed
    assert results[0].anonymizes and not results[0].notes


def _nan_avatars(detections, boxes, size, prompts):
    return [AvatarCrops(torch.full((len(d), 3, size, size), float("nan")), torch.ones((len(d), 1, size, size)))
            for d in detections]


def _one_person(height: int, width: int, box: tuple[int, int, int, int], score: float = 1.0):
    """A flat image with one bright rectangular person at xyxy ``box``, and that person's detection."""
    x0, y0, x1, y1 = box
    image = np.full((height, width, 3), 60, np.uint8)
    image[y0:y1, x0:x1] = 240
    masks = torch.zeros((1, height, width), dtype=torch.bool)
    masks[0, y0:y1, x0:x1] = True
    return image, PersonDetections(torch.tensor([[float(v) for v in box]]), torch.tensor([score]), masks)


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


FAULTS = {
    "remove": lambda mp, a: mp.setattr(a.method, "remove", _raise(RuntimeError("injected removal fault"))),
    "render": lambda mp, a: mp.setattr(a.method, "avatars", _raise(RuntimeError("injected render fault"))),
    "render-oom": lambda mp, a: mp.setattr(a.method, "avatars", _raise(torch.OutOfMemoryError("injected OOM"))),
    "render-nan": lambda mp, a: mp.setattr(a.method, "avatars", _nan_avatars),
    "merge": lambda mp, a: mp.setattr("refsd_trt.pipelines.lite.merge_crops", _raise(ValueError("injected merge fault"))),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fail_closed_when_a_stage_breaks(lite, sample_images, monkeypatch, fault):
    images = _photos(sample_images)[:1]
    FAULTS[fault](monkeypatch, lite)
    results = lite(images)
    _assert_everyone_replaced(images, results, lite)
    assert all(p.fallback and p.fallback.startswith("filled") for p in results[0].people)


def test_failed_detection_yields_no_image(lite, sample_images, monkeypatch):
    monkeypatch.setattr(lite.detector, "detect", _raise(RuntimeError("injected detector fault")))
    with pytest.raises(DetectionFailed, match="injected detector fault"):
        lite(_photos(sample_images)[:1])


def test_given_detections_skip_the_detector(lite, monkeypatch):
    monkeypatch.setattr(lite.detector, "detect", _raise(AssertionError("detector must not run")))
    image, given = _one_person(96, 128, (50, 20, 80, 80))
    result = lite([image], detections=[given])[0]
    assert failsafe.unchanged_fraction(image, result.image, given.masks[0].numpy()) < REPLACED
    # A 60 px tall person: the 66 px crop is upscaled to the 256 px working size, and the record says so.
    assert result.people[0].notes == ["small person: 66 px crop upscaled x3.9 to 256 px"]


def _digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def mixed_folder(tmp_path, sample_images) -> Path:
    images = _photos(sample_images)
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    save_with_metadata(images[0], folder / "astronaut.jpg")  # EXIF GPS + thumbnail, XMP, ICC, comment
    Image.fromarray(images[1]).save(folder / "nested" / "street.png")
    whole = (folder / "astronaut.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (folder / "notes.png").write_text("not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "readme.txt").write_text("not an input type")
    Image.fromarray(images[1]).save(folder / ".hidden.png")
    return folder


def test_folder_of_good_and_broken_files(mixed_folder, tmp_path, capsys):
    before = _digest(mixed_folder)
    out = tmp_path / "out"
    code = main(["anonymize", str(mixed_folder), "-o", str(out), "--preset", "lite", "-q"])
    captured = capsys.readouterr()
    assert code == 1  # some inputs failed
    assert _digest(mixed_folder) == before  # inputs untouched, byte for byte and mtime
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    for name in ("truncated.jpg", "notes.png", "empty.jpg"):
        assert sum(name in line for line in errors) == 1
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped ")]
    assert sorted(skipped) == [f"skipped {mixed_folder / '.hidden.png'}: hidden, not entered",
                               f"skipped {mixed_folder / 'readme.txt'}: not an image or video type"]
    for name, source in (("astronaut.jpg", "astronaut.jpg"), ("nested/street.png", "nested/street.png")):
        output = out / name
        assert Image.open(output).size == Image.open(mixed_folder / source).size
        report = metadata_report(output)
        assert report.clean, report.found
        assert SECRET not in output.read_bytes()
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in records) == ["failed"] * 3 + ["ok"] * 2
    ok = [r for r in records if r["status"] == "ok"]
    assert all(r["people_count"] >= 1 and r["config"]["preset"] == "lite" and r["people"][0]["prompt"] for r in ok)
    assert sorted(r["input"] for r in ok) == ["astronaut.jpg", "nested/street.png"]  # relative names only
    assert str(tmp_path) not in (out / "manifest.jsonl").read_text()
    assert "inputs failed                   3" in captured.out


def test_resume_redoes_nothing(mixed_folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    main(["anonymize", str(mixed_folder), "-o", str(out), "--preset", "lite", "-q"])
    written = _digest(out)
    monkeypatch.setattr(Anonymizer, "from_preset", _raise(AssertionError("resume must not load a model")))
    code = main(["anonymize", str(mixed_folder), "-o", str(out), "--preset", "lite", "-q", "--resume"])
    printed = capsys.readouterr().out
    assert code == 1  # the broken inputs are retried, and fail again
    assert "inputs skipped (resume)         2" in printed
    after = _digest(out)
    logs = ("manifest.jsonl", ".refsd-trt/state.jsonl")  # the run's published manifest and private state
    assert {k: v for k, v in after.items() if k not in logs} == {k: v for k, v in written.items() if k not in logs}


def test_killed_mid_write_leaves_no_partial_output(tmp_path, sample_images):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_photos(sample_images)[0]).save(folder / "astronaut.png")
    out = tmp_path / "out"
    # Kill the process the moment the encoder has written the temp file, before it is renamed.
    script = textwrap.dedent(f"""
        import os, signal
        from PIL import Image
        real = Image.Image.save
        def save_then_die(self, fp, *args, **kwargs):
            real(self, fp, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        Image.Image.save = save_then_die
        from refsd_trt.cli import main
        main(["anonymize", {str(folder)!r}, "-o", {str(out)!r}, "--preset", "lite", "-q"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (out / "astronaut.png").exists()
    leftovers = [p.name for p in out.iterdir() if p.name not in ("manifest.jsonl", ".refsd-trt")]
    assert leftovers and all(name.startswith(".astronaut.png.tmp-") for name in leftovers)
    assert main(["anonymize", str(folder), "-o", str(out), "--preset", "lite", "-q", "--resume"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".refsd-trt", "astronaut.png", "manifest.jsonl"]


def test_video_frames_in_video_out(tmp_path, sample_images):
    from refsd_trt.io import VideoWriter, iter_video_frames

    frame = torch.from_numpy(_photos(sample_images)[0].copy()).permute(2, 0, 1)
    source = tmp_path / "in" / "clip.mp4"
    source.parent.mkdir()
    with VideoWriter(source, 5.0, (512, 512)) as writer:
        for _ in range(3):
            writer.write(frame)
    out = tmp_path / "out"
    assert main(["anonymize", str(source.parent), "-o", str(out), "--preset", "lite", "-q", "--batch-size", "2"]) == 0
    with iter_video_frames(out / "clip.mp4") as frames:
        decoded = [f for f in frames]
    assert len(decoded) == 3 and tuple(decoded[0].shape) == (3, 512, 512)
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[-1])
    assert record["status"] == "ok" and record["frames"] == 3 and record["people_count"] >= 3


def test_demo_writes_outputs_and_a_contact_sheet(tmp_path, capsys):
    from refsd_trt.demo import SHEET_NAME, run_demo

    assert run_demo(tmp_path / "demo") == 0
    records = [json.loads(line) for line in (tmp_path / "demo" / "manifest.jsonl").read_text().splitlines()]
    assert len(records) >= 3 and all(r["status"] == "ok" and r["people_count"] >= 1 for r in records)
    sheet = Image.open(tmp_path / "demo" / SHEET_NAME)
    assert sheet.width > 600 and sheet.height > 3 * 320
    assert "contact sheet:" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["inpaint", "refsd"])
def test_tiny_preset_runs_both_methods_and_says_it_is_not_an_anonymization(method):
    anonymizer = Anonymizer.from_preset("tiny", method=method, backend="torch", steps=2, removal_steps=2,
                                        device="cpu")
    image, given = _one_person(256, 192, (70, 40, 130, 220), score=0.9)
    result = anonymizer([image], detections=[given])[0]
    assert result.method == method and not result.anonymizes
    assert "NOT an anonymization" in result.notes[0]
    assert result.image.shape == image.shape
    assert failsafe.unchanged_fraction(image, result.image, given.masks[0].numpy()) < REPLACED
    expected = ({"inpaint_unet", "inpaint_text_encoder_2"} if method == "inpaint"
                else {"removal_unet", "removal_text_encoder", "refine_unet", "refine_vae_decoder", "pose"})
    assert {"detector"} | expected <= set(anonymizer.engines)


def test_auto_times_each_engine_at_the_shape_it_runs(monkeypatch):
    from refsd_trt.engine import factory
    from refsd_trt.methods import backend_for

    asked, real = {}, factory.load_engine

    def spy(source, component, backend="auto", **options):
        asked[component] = options["axes"]
        return real(source, component, backend=backend_for(component, "torch"), **options)

    monkeypatch.setattr(factory, "load_engine", spy)
    Anonymizer.from_preset("tiny", method="refsd", batch_size=3, crop_batch_size=2, device="cpu")
    assert asked["yolo_seg"] == asked["yolo_pose"] == {"batch": 3, "height": 640, "width": 640}
    # Guided UNets see each crop twice (removal 7.5, refinement 5.0); refsd's VAEs one row per crop;
    # all at the tiny models' working size (sample_size 32 latents: 256²).
    size = {"height": 256, "width": 256}
    assert asked["unet"] == {"batch": 4, **size} and asked["vae_encoder"] == asked["vae_decoder"] == {"batch": 2, **size}
    assert asked["text_encoder"] == asked["text_encoder_2"] == {}
