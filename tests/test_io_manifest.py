"""Manifest and resume state: durable JSON lines, torn lines tolerated, resume skips only unchanged
finished inputs; the published manifest refuses absolute paths and input hashes; the state is private."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch

from refsd_trt.io import Manifest, ManifestWarning, ResumeState, sha256_file
from refsd_trt.types import PersonRecord


@pytest.fixture
def run(tmp_path):
    """Three inputs: a.jpg and b.jpg processed ok (outputs exist), c.jpg failed."""
    inputs = {}
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        inputs[name] = tmp_path / name
        inputs[name].write_bytes(name.encode() * 100)
    (tmp_path / "out").mkdir()
    manifest = ResumeState(tmp_path / "state.jsonl")
    for name, status in (("a.jpg", "ok"), ("b.jpg", "ok"), ("c.jpg", "failed")):
        output = tmp_path / "out" / name
        if status == "ok":
            output.write_bytes(b"anonymized")
        manifest.append(
            {
                "input": str(inputs[name]),
                "output": str(output),
                "status": status,
                "input_sha256": sha256_file(inputs[name]),
                "output_sha256": sha256_file(output) if status == "ok" else None,
                "anonymized": True,
                "config": {"preset": "lite", "seed": 0},
                "error": None if status == "ok" else f"{inputs[name]}: truncated or corrupt image data",
                "people": [
                    PersonRecord(box=(1.0, 2.0, 3.0, 4.0), score=np.float32(0.5), coverage=0.1, seed=7)
                ],
                "timings_s": {"detect": torch.tensor(0.25)},
            }
        )
    return manifest, inputs


def test_lines_are_json_with_the_callers_fields(run):
    manifest, _inputs = run
    lines = manifest.path.read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first["people"][0]["box"] == [1.0, 2.0, 3.0, 4.0] and first["people"][0]["score"] == 0.5
    assert first["timings_s"] == {"detect": 0.25} and first["written_at"].endswith("+00:00")
    assert [r["status"] for r in manifest.records()] == ["ok", "ok", "failed"]


def test_done_inputs_are_the_ok_ones_with_outputs(run):
    manifest, inputs = run
    assert set(manifest.done_inputs()) == {str(inputs["a.jpg"]), str(inputs["b.jpg"])}


def test_changed_input_and_deleted_output_are_not_done(run, tmp_path):
    manifest, inputs = run
    inputs["a.jpg"].write_bytes(b"a different photo")
    (tmp_path / "out" / "b.jpg").unlink()
    assert manifest.done_inputs() == {}


def test_only_outputs_of_an_anonymizing_run_with_the_same_settings_and_bytes_are_done(run, tmp_path):
    manifest, inputs = run
    assert set(manifest.done_inputs({"preset": "lite", "seed": 0, "strength": None})) == {
        str(inputs["a.jpg"]), str(inputs["b.jpg"])}
    assert manifest.done_inputs({"preset": "lite", "seed": 1}) == {}  # another effective configuration
    assert manifest.done_inputs({"preset": "tiny"}) == {}
    (tmp_path / "out" / "a.jpg").write_bytes(b"edited after the run")  # the output is not what was written
    tiny = {"input": str(inputs["b.jpg"]), "output": str(tmp_path / "out" / "b.jpg"), "status": "ok",
            "input_sha256": sha256_file(inputs["b.jpg"]), "output_sha256": sha256_file(tmp_path / "out" / "b.jpg"),
            "anonymized": False}  # the tiny preset's random models replace nothing
    manifest.append(tiny)
    assert manifest.done_inputs() == {}


def test_the_latest_line_of_an_input_decides(run, tmp_path):
    manifest, inputs = run
    (tmp_path / "out" / "c.jpg").write_bytes(b"anonymized")
    retry = {
        "input": str(inputs["c.jpg"]),
        "output": str(tmp_path / "out" / "c.jpg"),
        "input_sha256": sha256_file(inputs["c.jpg"]),
        "output_sha256": sha256_file(tmp_path / "out" / "c.jpg"),
        "anonymized": True,
    }
    manifest.append({**retry, "status": "ok"})
    assert str(inputs["c.jpg"]) in manifest.done_inputs()
    manifest.append({**retry, "status": "failed"})
    assert str(inputs["c.jpg"]) not in ResumeState(manifest.path).done_inputs()


def test_torn_last_line_is_skipped_with_a_warning_and_the_next_append_is_clean(run):
    manifest, inputs = run
    with open(manifest.path, "ab") as stream:  # what a crash in the middle of append() leaves
        stream.write(b'{"input": "/photos/d.jpg", "output": "/o/d.jp')
    with pytest.warns(ManifestWarning, match=r"state.jsonl:4: unreadable manifest line"):
        assert set(manifest.done_inputs()) == {str(inputs["a.jpg"]), str(inputs["b.jpg"])}
    resumed = ResumeState(manifest.path)  # a new run appends after the torn line, not glued to it
    resumed.append({"input": "/photos/d.jpg", "output": None, "status": "skipped", "input_sha256": None})
    with pytest.warns(ManifestWarning):
        records = resumed.records()
    assert [r["input"] for r in records][-1] == "/photos/d.jpg" and len(records) == 4


def test_missing_state_means_nothing_done_and_bad_records_are_refused(tmp_path):
    manifest = ResumeState(tmp_path / "none.jsonl")
    assert manifest.done_inputs() == {} and manifest.records() == []
    with pytest.raises(ValueError, match="lacks input_sha256"):
        manifest.append({"input": "a", "output": "b", "status": "ok"})
    with pytest.raises(ValueError, match="status must be one of"):
        manifest.append({"input": "a", "output": "b", "status": "done", "input_sha256": None})
    assert not manifest.path.exists()
    with pytest.raises(TypeError, match="object is not JSON-serializable"):
        manifest.append({"input": "a", "output": "b", "status": "ok", "input_sha256": None, "x": object()})
    assert not manifest.path.exists()


def test_published_manifest_refuses_absolute_paths_and_input_hashes(tmp_path):
    manifest = Manifest(tmp_path / "manifest.jsonl")
    for leak in ({"input": str(tmp_path / "a.jpg")}, {"output": str(tmp_path / "out" / "a.jpg")},
                 {"intended_output": "/out/a.jpg", "status": "failed", "output": None},
                 {"input_sha256": "0" * 64}):
        with pytest.raises(ValueError, match="published manifest records name files relatively"):
            manifest.append({"input": "a.jpg", "output": "a.jpg", "status": "ok", **leak})
    assert not manifest.path.exists()
    manifest.append({"input": "nested/a.jpg", "output": "nested/a.jpg", "status": "ok", "output_sha256": "1" * 64})
    manifest.append({"input": "b.jpg", "output": None, "status": "failed", "intended_output": "b.jpg"})
    assert [r["input"] for r in Manifest(manifest.path).records()] == ["nested/a.jpg", "b.jpg"]
    assert manifest.private_lines() == 0


def test_lines_of_earlier_versions_with_absolute_paths_are_counted(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps({"input": "/photos/a.jpg", "output": "/out/a.jpg", "status": "ok",
                                "input_sha256": "0" * 64}) + "\n")
    Manifest(path).append({"input": "b.jpg", "output": "b.jpg", "status": "ok"})
    assert Manifest(path).private_lines() == 1


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_resume_state_is_private(tmp_path):
    old = os.umask(0o022)
    try:
        state = ResumeState(tmp_path / "out" / ".refsd-trt" / "state.jsonl", own_folder=True)
        state.append({"input": "/photos/a.jpg", "output": None, "status": "failed", "input_sha256": None})
    finally:
        os.umask(old)
    assert stat.S_IMODE(state.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o600
    state.path.chmod(0o644)  # widened by someone: the next append narrows it again
    ResumeState(state.path).append({"input": "/photos/a.jpg", "output": None, "status": "failed",
                                    "input_sha256": None})
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o600
    assert len(state.records()) == 2
