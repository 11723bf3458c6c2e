"""Every model of the tiny zoo: ONNX fp32 and fp16 on onnxruntime-CPU against torch fp32.

fp32 must match within 1e-4 and fp16 within 1e-2, both relative to the output's scale
(``max|onnx - torch| <= tol * max(1, max|torch|)``, see ``export/validation.py``), at batch 1 and 4
and two spatial sizes wherever the model is dynamic in them.
"""

from __future__ import annotations

import pytest
import torch
from refsd_trt.engine.onnxruntime_backend import OrtEngine
from refsd_trt.export import sources
from refsd_trt.export.formats import export
from refsd_trt.export.validation import TOLERANCE, max_abs_diffs

# (zoo entry, file inside it or "", component)
MODELS = [
    ("sd-inpaint", "", "unet"),
    ("sd-inpaint", "", "vae_encoder"),
    ("sd-inpaint", "", "vae_decoder"),
    ("sd-inpaint", "", "text_encoder"),
    ("sdxl", "", "unet"),
    ("sdxl", "", "text_encoder"),
    ("sdxl", "", "text_encoder_2"),
    ("sdxl-inpaint", "", "unet"),
    ("sdxl-vae-fp16-fix", "", "vae_encoder"),
    ("sdxl-vae-fp16-fix", "", "vae_decoder"),
    ("yolov8-seg", "yolov8n-seg.pt", "yolo_seg"),
    ("yolov8-pose", "yolov8n-pose.pt", "yolo_pose"),
]

# Batch 4 at the smallest size, batch 1 at a larger non-square one (catches height/width swaps).
SHAPES = {
    "diffusion": [{"batch": 4, "height": 256, "width": 256, "tokens": 77}, {"batch": 1, "height": 320, "width": 384, "tokens": 154}],
    "text": [{"batch": 4, "tokens": 77}, {"batch": 1, "tokens": 77}],  # CLIP's context is fixed at 77
    "yolo": [{"batch": 4, "height": 160, "width": 160}, {"batch": 1, "height": 224, "width": 288}],
}


def _family(component: str) -> str:
    return "text" if component.startswith("text") else "yolo" if component.startswith("yolo") else "diffusion"


@pytest.fixture(scope="module")
def exported(zoo, tmp_path_factory):
    """All exports once per test session (about a minute on two cores), in a private cache."""
    root = tmp_path_factory.mktemp("artifacts")
    done = {}
    for entry, file, component in MODELS:
        ref = zoo(entry) / file if file else zoo(entry)
        done[entry, component] = ref, {fmt: export(ref, component, fmt, root=root) for fmt in ("onnx", "onnx-fp16")}
    return done


@pytest.mark.parametrize("entry,file,component", MODELS, ids=[f"{e}:{c}" for e, _, c in MODELS])
def test_onnx_matches_torch(exported, entry, file, component):
    ref, artifacts = exported[entry, component]
    loaded = sources.load(ref, component)
    engines = {fmt: OrtEngine(loaded.spec, a.main_file) for fmt, a in artifacts.items()}
    assert engines["onnx"].precision == "float32" and engines["onnx-fp16"].precision == "float16"
    for axes in SHAPES[_family(component)]:
        feeds = loaded.spec.example_inputs(**axes)
        with torch.no_grad():
            want = dict(zip(loaded.spec.output_names, loaded.model(*feeds.values())))
        for fmt, engine in engines.items():
            cast = {k: v.to(engine.input_dtype(k)) for k, v in feeds.items()}
            got = engine.run(cast)
            diffs = max_abs_diffs(got, want)
            tol = TOLERANCE[engine.precision]
            for name, ref_out in want.items():
                assert got[name].shape == ref_out.shape, (fmt, axes, name)
                limit = tol * max(1.0, float(ref_out.abs().max()))
                assert diffs[name] <= limit, f"{fmt} {axes} {name}: {diffs[name]:.3g} > {limit:.3g}"


def test_manifests_record_validation_and_provenance(exported):
    _, artifacts = exported["sdxl", "unet"]
    fp32, fp16 = artifacts["onnx"].manifest, artifacts["onnx-fp16"].manifest
    assert fp32["precision"] == "float32" and fp16["precision"] == "float16" and fp32["opset"] == 17
    assert [t["name"] for t in fp32["inputs"]] == ["sample", "timestep", "encoder_hidden_states", "text_embeds",
                                                   "time_ids"]
    assert fp16["inputs"][0]["dtype"] == "float16" and fp32["profile"]["sample"][0] == [1, 4, 32, 32]
    assert {"torch", "onnx", "onnxslim", "diffusers"} <= set(fp32["tools"])
    assert len(fp32["source"]["sha256"]) == 64 and fp16["source"] == fp32["source"]
    for manifest in (fp32, fp16):
        assert manifest["validation"]["max_abs_diff"]["out_sample"] <= manifest["validation"]["limit"]["out_sample"]
    assert fp32["cleanup"]["nodes_after"] < fp32["cleanup"]["nodes_before"]
