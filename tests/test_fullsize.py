"""``make check-fullsize`` (refsd_trt/models/check_fullsize.py): the real-size models through the real
export path. One test runs the same code on the narrowed configs (about 80 s); the full-size run
(about 15 minutes, 16 GB) runs only when asked (``REFSD_FULLSIZE=1``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from refsd_trt.models import check_fullsize


def _run(tmp_path, *args: str, lock: bool = False) -> tuple[int, dict]:
    out = tmp_path / "figures.json"
    command = [sys.executable, "-m", "refsd_trt.models.check_fullsize", "--out", str(out), *args]
    # The full-size run shares the machine's full-size lock with make check-real-layout / check-fullsize.
    command = ["flock", "/tmp/refsd-fullsize.lock", *command] if lock else command
    env = {**os.environ, "REFSD_TRT_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert out.is_file(), done.stderr[-2000:]
    return done.returncode, json.loads(out.read_text())


@pytest.mark.slow
def test_narrowed_sdxl_unet_goes_through_every_step_and_leaves_nothing_behind(tmp_path):
    code, figures = _run(tmp_path, "--shrink", "--latent", "32", "--model", "sdxl-base-unet")
    assert code == 0
    (record,) = figures["models"]
    assert record["ok"] and record["latent"] == [32, 32]
    for step in check_fullsize.STEPS:
        assert record[step]["wall_s"] > 0 and record[step]["peak_rss_gb"] > 0.1, step
    assert record["torch"]["shapes"]["sample"] == [1, 4, 32, 32]
    assert record["ort-fp32"]["errors"]["out_sample"]["relative"] < 1e-4
    assert 0 < record["ort-fp16"]["errors"]["out_sample"]["max_abs"] < 0.05
    kept = record["onnx-fp16"]["fp32_report"]
    assert kept["timestep"] == kept["time_ids"] == {"float32": 1}
    assert kept["Sin"] == kept["Cos"] == {"float32": 2} and set(kept["InstanceNormalization"]) == {"float32"}
    assert record["onnx"]["files"]["model.onnx"] > 2 * record["onnx-fp16"]["files"]["model.onnx"] * 0.9
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.parent.name != "digests"]
    assert leftovers == [], leftovers


def test_a_failed_step_fails_the_model_and_stops_it():
    record = {step: {"wall_s": 1.0} for step in check_fullsize.STEPS[:2]}
    record["onnx-fp16"] = {"failed": "ValidationError: outputs differ", "exit": 1}
    assert not check_fullsize.passed(record)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("REFSD_FULLSIZE") != "1",
                    reason="full-size models: about 15 minutes and 16 GB of RAM; set REFSD_FULLSIZE=1 to run")
def test_full_size_models_export_convert_and_match_torch(tmp_path):
    code, figures = _run(tmp_path, lock=True)
    failed = [r["model"]["name"] for r in figures["models"] if not r["ok"]]
    assert code == 0 and not failed, failed
    for record in figures["models"]:
        assert record["onnx"]["peak_rss_gb"] < 16 and record["onnx-fp16"]["peak_rss_gb"] < 16, record["model"]["name"]
