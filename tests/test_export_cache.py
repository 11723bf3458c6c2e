"""Artifact caching: unchanged inputs are a cache hit; corrupt or truncated artifacts are reported,
rebuilt and never loaded; arguments are validated with clear errors; TensorRT builds on GPUs."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from refsd_trt.export import artifacts, formats, torch_to_onnx
from refsd_trt.export.formats import export
from refsd_trt.export.specs import AxisRange


@pytest.fixture
def text_encoder(zoo):
    """The cheapest model of the zoo to export (about a second)."""
    return zoo("sd-inpaint")


def _forbid_export(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("export ran although the artifact was cached")

    monkeypatch.setattr(torch_to_onnx, "export", fail)


def test_second_export_is_a_cache_hit(text_encoder, tmp_path, monkeypatch):
    first = export(text_encoder, "text_encoder", "onnx-fp16", root=tmp_path)
    _forbid_export(monkeypatch)
    messages = []
    second = export(text_encoder, "text_encoder", "onnx-fp16", root=tmp_path, progress=messages.append)
    assert second.folder == first.folder and second.manifest["files"] == first.manifest["files"]
    assert all("cached" in m for m in messages) and len(messages) == 2  # the fp16 file and its fp32 parent


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corrupt_artifact_is_reported_and_rebuilt_never_loaded(text_encoder, tmp_path, caplog, damage):
    good = export(text_encoder, "text_encoder", "onnx", root=tmp_path)
    path = good.main_file
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-10] + bytes(b ^ 0xFF for b in data[-10:]))
    else:
        path.unlink()
    with pytest.raises(artifacts.CorruptArtifact, match="model.onnx"):
        artifacts.verify(good.folder)
    from refsd_trt.engine.factory import load_engine

    with pytest.raises(artifacts.CorruptArtifact):
        load_engine(good.folder, backend="onnxruntime")  # refused before any runtime sees the file

    with caplog.at_level(logging.WARNING, logger="refsd_trt.export.artifacts"):
        rebuilt = export(text_encoder, "text_encoder", "onnx", root=tmp_path)
    assert any("corrupt" in r.message and str(path) in r.message for r in caplog.records)
    assert rebuilt.folder == good.folder and artifacts.sha256_file(rebuilt.main_file) == \
        good.manifest["files"]["model.onnx"]["sha256"]


def test_unreadable_manifest_is_rebuilt(text_encoder, tmp_path, caplog):
    good = export(text_encoder, "text_encoder", "onnx", root=tmp_path)
    (good.folder / artifacts.MANIFEST).write_text("{not json")
    with caplog.at_level(logging.WARNING):
        rebuilt = export(text_encoder, "text_encoder", "onnx", root=tmp_path)
    assert "manifest" in caplog.text and rebuilt.manifest["key"] == good.manifest["key"]


def test_changed_source_weights_change_the_key(text_encoder, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(text_encoder, copy)
    first = export(copy, "text_encoder", "onnx", root=tmp_path / "cache", validate=False)
    config = json.loads((copy / "text_encoder" / "config.json").read_text())
    (copy / "text_encoder" / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu"}))
    second = export(copy, "text_encoder", "onnx", root=tmp_path / "cache", validate=False)
    assert first.folder != second.folder and first.manifest["source"]["sha256"] != second.manifest["source"]["sha256"]


def test_publish_is_atomic_when_a_build_fails(tmp_path):
    def broken(staging):
        (staging / "model.onnx").write_bytes(b"half")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError, match="killed"):
        artifacts.publish(tmp_path / "thing", broken, "model.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs,error", [
    ({"component": "vae"}, "unknown component 'vae'"),
    ({"format": "coreml"}, "unknown format 'coreml'"),
    ({"opset": 11}, "opset must be in 17..20"),
    ({"ref": "/no/such/model"}, "no such model folder"),
])
def test_arguments_are_validated(text_encoder, tmp_path, kwargs, error):
    args = {"ref": text_encoder, "component": "text_encoder", "format": "onnx", **kwargs}
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        export(args.pop("ref"), args.pop("component"), args.pop("format"), root=tmp_path, **args)


def test_wrong_yolo_task_is_refused(zoo, tmp_path):
    with pytest.raises(ValueError, match="needs a 'pose' model"):
        export(zoo("yolov8-seg") / "yolov8n-seg.pt", "yolo_pose", root=tmp_path)


def test_tensorrt_needs_a_gpu_or_says_why(text_encoder, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the gpu-marked tests cover TensorRT")
    with pytest.raises(RuntimeError, match="TensorRT|GPU"):
        export(text_encoder, "text_encoder", "tensorrt-fp16", root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before exporting the ONNX parents


def test_profile_overrides_are_checked(text_encoder):
    spec = formats.sources.spec_of("text_encoder", {"hidden_size": 32, "max_position_embeddings": 77})
    with pytest.raises(ValueError, match="no axes"):
        formats.profiled_spec(spec, {"height": AxisRange(1, 2, 3)})
    assert formats.profiled_spec(spec, {"batch": AxisRange(2, 2, 2)}).profile()["input_ids"][0] == (2, 77)


@pytest.mark.gpu
def test_tensorrt_build_run_cache_refit(zoo, tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT (pip install 'refsd-trt[gpu]')")
    from refsd_trt.engine.onnxruntime_backend import OrtEngine
    from refsd_trt.engine.tensorrt_backend import ScratchMemory, TrtEngine
    from refsd_trt.export import sources

    ref = zoo("sdxl-vae-fp16-fix")
    axes = {"batch": AxisRange(1, 1, 2), "height": AxisRange(256, 256, 512), "width": AxisRange(256, 256, 512)}
    plan = export(ref, "vae_decoder", "tensorrt-fp16", root=tmp_path, axes=axes, refittable=True)
    assert plan.manifest["build"]["strongly_typed"] and plan.manifest["profile"]["latents"][2] == [2, 4, 64, 64]
    assert plan.manifest["build"]["refittable"]
    assert export(ref, "vae_decoder", "tensorrt-fp16", root=tmp_path, axes=axes,
                  refittable=True).folder == plan.folder  # cache hit

    spec = sources.spec_of("vae_decoder", plan.manifest["config"])
    scratch = ScratchMemory(torch.device("cuda"))
    eager = TrtEngine(spec, plan.main_file, scratch=scratch)
    graphed = TrtEngine(spec, plan.main_file, scratch=scratch, cuda_graph=True)  # shares the activations buffer
    onnx = export(ref, "vae_decoder", "onnx-fp16", root=tmp_path)
    reference = OrtEngine(spec, onnx.main_file)
    feeds = spec.example_inputs("float16", batch=2, height=256, width=320)
    want = reference.run(feeds)["images"].float()
    cuda_feeds = {k: v.cuda() for k, v in feeds.items()}
    out = torch.empty(2, 3, 256, 320, dtype=torch.float16, device="cuda")
    for engine in (eager, graphed, graphed):  # the second graphed run replays the captured graph
        got = engine.run(cuda_feeds, outputs={"images": out})
        torch.cuda.synchronize()
        assert got["images"].data_ptr() == out.data_ptr()
        torch.testing.assert_close(out.float().cpu(), want, atol=2e-2, rtol=2e-2)
    eager.refit(onnx.main_file)  # same weights: exercises the refit path without changing results
    torch.testing.assert_close(eager.run(cuda_feeds)["images"].float().cpu(), want, atol=2e-2, rtol=2e-2)


def test_loading_an_unchanged_artifact_again_does_not_rehash_it(text_encoder, tmp_path, monkeypatch):
    """Every engine load verifies its artifact; a multi-GB UNet must not be hashed again each time."""
    good = export(text_encoder, "text_encoder", "onnx", root=tmp_path)
    artifacts.verify(good.folder)  # remembers the file's hash under its (path, size, mtime)
    hashed = []
    real = artifacts.sha256_file
    monkeypatch.setattr(artifacts, "sha256_file", lambda path: hashed.append(path) or real(path))
    artifacts.verify(good.folder)
    assert hashed == []
    good.main_file.write_bytes(good.main_file.read_bytes())  # same bytes, a new mtime: hashed again
    artifacts.verify(good.folder)
    assert hashed == [good.main_file]
