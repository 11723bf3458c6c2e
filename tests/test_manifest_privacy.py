"""The published manifest names nothing that leads back to the originals (relative names, no input
hash, not even in error lines); the resume state is private (hidden 0700 folder, 0600 file, or
elsewhere with --state, or none with --publish) and is what --resume reads."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from refsd_trt.api import AnonymizedImage, Anonymizer
from refsd_trt.cli import main
from refsd_trt.types import PersonRecord


class FakeAnonymizer:
    """Blacks every image out and reports one person: no model, so the run is quick."""

    def __init__(self, config=None):
        settings = config.to_dict() if config is not None else {"preset": "fake"}
        self.config = SimpleNamespace(to_dict=lambda: dict(settings),
                                      keep_metadata=config.keep_metadata if config is not None else ())
        self.engines = {}
        self.preset = SimpleNamespace(anonymizes=True)
        self.calls = 0

    def __call__(self, images, image_keys=None):
        self.calls += 1
        out = []
        for image in images:
            pixels = np.zeros(tuple(image.permute(1, 2, 0).shape), np.uint8)
            person = PersonRecord(box=(0.0, 0.0, 4.0, 4.0), score=0.9, coverage=0.1, seed=3)
            out.append(AnonymizedImage(pixels, [person], {"detect": 0.0}, "fake", "fake", True))
        return out


@pytest.fixture()
def fake(monkeypatch):
    made = []

    def from_preset(config=None, **kwargs):
        made.append(FakeAnonymizer(config))
        return made[-1]

    monkeypatch.setattr(Anonymizer, "from_preset", from_preset)
    return made


@pytest.fixture()
def photos(tmp_path) -> Path:
    folder = tmp_path / "secret-client" / "photos"
    (folder / "nested").mkdir(parents=True)
    for name in ("a.png", "nested/b.png"):
        Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(folder / name)
    (folder / "broken.png").write_text("not an image")
    return folder


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_published_manifest_has_relative_names_and_no_input_hashes(fake, photos, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "secret-client" / "gone.jpg"
    assert main(["anonymize", str(photos), str(missing), "-o", str(out), "-q"]) == 1
    printed = capsys.readouterr()
    text = (out / "manifest.jsonl").read_text()
    assert str(tmp_path) not in text and "secret-client" not in text and "input_sha256" not in text
    records = {r["input"]: r for r in _lines(out / "manifest.jsonl")}
    assert set(records) == {"a.png", "nested/b.png", "broken.png", "gone.jpg"}
    assert records["nested/b.png"]["output"] == "nested/b.png" and records["nested/b.png"]["status"] == "ok"
    assert records["a.png"]["output_sha256"] and records["a.png"]["people_count"] == 1
    assert records["broken.png"]["status"] == "failed" and records["broken.png"]["error"].startswith("broken.png: ")
    assert records["broken.png"]["intended_output"] == "broken.png"
    assert records["gone.jpg"]["error"] == "gone.jpg: no such file or folder"
    # The console (and the private state) still name the files as the user gave them.
    assert f"error: {photos / 'broken.png'}: " in printed.err
    assert "resume state (private, do not publish it)" in printed.out


def test_resume_state_is_private_hidden_and_complete(fake, photos, tmp_path):
    out = tmp_path / "out"
    main(["anonymize", str(photos), "-o", str(out), "-q"])
    state = out / ".refsd-trt" / "state.jsonl"
    records = {r["input"]: r for r in _lines(state)}
    a = records[str((photos / "a.png").resolve())]
    assert a["output"] == str((out / "a.png").resolve()) and a["status"] == "ok" and a["anonymized"] is True
    assert len(a["input_sha256"]) == 64 and len(a["output_sha256"]) == 64 and a["config"]["batch_size"]
    assert records[str((photos / "broken.png").resolve())]["status"] == "failed"
    if os.name != "nt":
        assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
    # Using the output folder as an input later never picks the state up (hidden, not entered).
    assert main(["anonymize", str(out), "-o", str(tmp_path / "again"), "-q"]) == 0
    assert {r["input"] for r in _lines(tmp_path / "again" / "manifest.jsonl")} == {"a.png", "nested/b.png"}


def test_resume_reads_the_private_state(fake, photos, tmp_path, capsys):
    out = tmp_path / "out"
    main(["anonymize", str(photos), "-o", str(out), "-q"])
    (out / "manifest.jsonl").rename(tmp_path / "published.jsonl")  # the published manifest is not needed
    assert main(["anonymize", str(photos), "-o", str(out), "-q", "--resume"]) == 1  # broken.png fails again
    assert "inputs skipped (resume)         2" in capsys.readouterr().out
    assert len(fake) == 1  # nothing left to anonymize: the resumed run built no model


def test_state_elsewhere_with_state_flag(fake, photos, tmp_path, capsys):
    out, private = tmp_path / "out", tmp_path / "private" / "run.jsonl"
    main(["anonymize", str(photos), "-o", str(out), "-q", "--state", str(private)])
    assert private.is_file() and not (out / ".refsd-trt").exists()
    assert main(["anonymize", str(photos), "-o", str(out), "-q", "--resume", "--state", str(private)]) == 1
    assert "inputs skipped (resume)         2" in capsys.readouterr().out


def test_publish_writes_no_private_state_and_refuses_resume(fake, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["anonymize", str(photos / "a.png"), "-o", str(out), "-q", "--publish"]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a.png", "manifest.jsonl"]
    assert "resume state" not in capsys.readouterr().out
    for extra in (["--resume"], ["--state", str(tmp_path / "s.jsonl")]):
        assert main(["anonymize", str(photos), "-o", str(out), "-q", "--publish", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "--publish" in err[0]


def test_publishing_over_private_leftovers_says_so(fake, photos, tmp_path, capsys):
    out = tmp_path / "out"
    main(["anonymize", str(photos / "a.png"), "-o", str(out), "-q"])  # leaves OUT/.refsd-trt/
    with open(out / "manifest.jsonl", "a") as stream:  # a line as versions before the split wrote them
        stream.write(json.dumps({"input": str(photos / "a.png"), "output": str(out / "a.png"), "status": "ok",
                                 "input_sha256": "0" * 64}) + "\n")
    capsys.readouterr()
    assert main(["anonymize", str(photos / "a.png"), "-o", str(out), "-q", "--publish"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2
    assert "1 line(s) from an earlier version" in notes[0] and "private resume state" in notes[1]


def test_per_person_seeds_stay_in_the_private_state(fake, photos, tmp_path):
    # Seeds derive from each input's hash: published, they would confirm a candidate original.
    out = tmp_path / "out"
    main(["anonymize", str(photos), "-o", str(out), "-q"])
    published = {r["input"]: r for r in _lines(out / "manifest.jsonl")}
    assert published["a.png"]["people"][0]["score"] == 0.9 and "seed" not in published["a.png"]["people"][0]
    private = {r["input"]: r for r in _lines(out / ".refsd-trt" / "state.jsonl")}
    assert private[str((photos / "a.png").resolve())]["seeds"] == [3]


def test_keep_metadata_reaches_the_outputs_and_the_manifest(fake, tmp_path):
    from refsd_trt.io.metadata_policy import GPS_IFD

    source = tmp_path / "in" / "geo.jpg"
    source.parent.mkdir()
    exif = Image.Exif()
    exif[0x0132] = "2026:12:01 10:00:00"  # DateTime
    exif[0x010F] = "SecretCam"  # Make
    exif.get_ifd(GPS_IFD)[2] = (52.0, 31.0, 12.0)  # GPSLatitude
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(source, exif=exif)

    assert main(["anonymize", str(source), "-o", str(tmp_path / "plain"), "-q"]) == 0
    with Image.open(tmp_path / "plain" / "geo.jpg") as plain:
        assert len(plain.getexif()) == 0
    assert _lines(tmp_path / "plain" / "manifest.jsonl")[0]["metadata"]["keep"] == []

    assert main(["anonymize", str(source), "-o", str(tmp_path / "kept"), "-q", "--keep-metadata", "gps"]) == 0
    with Image.open(tmp_path / "kept" / "geo.jpg") as kept:
        tags = kept.getexif()
        assert tuple(float(v) for v in tags.get_ifd(GPS_IFD)[2]) == (52.0, 31.0, 12.0)
        assert 0x0132 not in tags and 0x010F not in tags
    assert _lines(tmp_path / "kept" / "manifest.jsonl")[0]["metadata"]["keep"] == ["gps"]


def test_a_hung_stage_stops_the_run_with_one_line(fake, photos, tmp_path, monkeypatch, capsys):
    from refsd_trt.stages import StageHung

    def hung(self, images, image_keys=None):
        raise StageHung("stage render passed its 5 s limit and is still running 3 s later")

    monkeypatch.setattr(FakeAnonymizer, "__call__", hung)
    out = tmp_path / "out"
    assert main(["anonymize", str(photos), "-o", str(out), "-q", "--batch-size", "1"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == ("error: stage render passed its 5 s limit and is still running 3 s "
                                            "later; stopping, the remaining inputs are not processed")
    failed = [r for r in _lines(out / "manifest.jsonl") if r["status"] == "failed"]
    assert any(r["error"].endswith("not processed: stage render passed its 5 s limit and is still running 3 s later")
               for r in failed)
