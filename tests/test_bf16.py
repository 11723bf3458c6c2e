"""bf16 CPU engines: agreement with fp32, auto's choice among the bf16 backends, the default rule."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from refsd_trt.engine import cpu_features as features_module
from refsd_trt.engine import factory, timing
from refsd_trt.engine.cpu_features import CpuFeatures, read_flags
from refsd_trt.engine.factory import load_engine
from refsd_trt.export.formats import export
from refsd_trt.methods import precision_for

CPU = torch.device("cpu")
# bf16 keeps 8 significant bits (relative rounding 2^-9 per value); through a tiny UNet's few dozen
# layers the error stays near 1 % of the output's size. fp32 against itself is ~1e-7.
MAX_RELATIVE_ERROR = 0.03
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")


@pytest.fixture
def pipeline(zoo):
    return zoo("sd-inpaint")


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


@pytest.mark.parametrize("component, axes", [("unet", {"batch": 2, "height": 256, "width": 256, "tokens": 77}),
                                              ("vae_decoder", {"batch": 1, "height": 256, "width": 256})])
def test_torch_bf16_matches_fp32_and_keeps_float32_at_the_boundary(pipeline, component, axes):
    exact = load_engine(pipeline, component, backend="torch")
    bf16 = load_engine(pipeline, component, backend="torch", precision="bfloat16")
    feeds = exact.spec.example_inputs(**axes)
    bf16.check_feeds(feeds)  # the bf16 engine takes the float32 feeds the pipelines make
    want = exact.run(feeds)[exact.spec.output_names[0]]
    got = bf16.run(feeds)[bf16.spec.output_names[0]]
    assert bf16.precision == "bfloat16" and got.dtype == torch.float32 and got.shape == want.shape
    error = relative_error(got, want)
    assert 0 < error < MAX_RELATIVE_ERROR  # > 0: it really computed in bf16


@needs_openvino
def test_openvino_bf16_matches_fp32(pipeline, tmp_path):
    exact = load_engine(pipeline, "vae_decoder", backend="torch")
    ov = load_engine(pipeline, "vae_decoder", backend="openvino", precision="bfloat16", root=tmp_path)
    feeds = exact.spec.example_inputs(batch=1, height=256, width=256)
    name = exact.spec.output_names[0]
    got, want = ov.run(feeds)[name], exact.run(feeds)[name]
    assert ov.backend == "openvino" and got.dtype == torch.float32
    assert 0 < relative_error(got, want) < MAX_RELATIVE_ERROR


def test_auto_times_the_bf16_backends_and_records_them_apart_from_fp32(pipeline, tmp_path):
    engine = load_engine(pipeline, "vae_decoder", backend="auto", precision="bfloat16", root=tmp_path,
                         axes={"batch": 1})
    backends = export(pipeline, "vae_decoder", "onnx", root=tmp_path).manifest["backends"]
    key = timing.device_key(CPU)
    assert list(backends) == [f"{key}/bfloat16"]  # fp32's record (under key) is not touched
    (record,) = backends[f"{key}/bfloat16"].values()
    assert set(record["timings_ms"]) | set(record["errors"]) == set(factory.available_backends(CPU, "bfloat16"))
    assert record["winner"] == min(record["timings_ms"], key=record["timings_ms"].get)
    assert engine.precision == "bfloat16" and engine.backend.startswith(record["winner"])


def test_bf16_candidates_are_torch_and_openvino_where_installed():
    want = ["torch", "openvino"] if importlib.util.find_spec("openvino") else ["torch"]
    assert factory.available_backends(CPU, "bfloat16") == want
    assert "onnxruntime" in factory.available_backends(CPU, "float32")


def test_bf16_is_refused_off_cpu_and_on_backends_without_it(pipeline):
    with pytest.raises(ValueError, match="bfloat16 engines are for CPUs"):
        load_engine(pipeline, "unet", backend="torch", device="cuda", precision="bfloat16")
    with pytest.raises(ValueError, match="onnxruntime backend has no bfloat16"):
        load_engine(pipeline, "unet", backend="onnxruntime", precision="bfloat16")


@pytest.mark.parametrize("flags, unet, text", [
    ({"amx_bf16", "avx512_bf16"}, "bfloat16", "float32"),
    ({"avx512_bf16"}, "bfloat16", "float32"),
    ({"avx512f", "avx512_vnni"}, "float32", "float32"),
])
def test_default_precision_follows_the_cpu(monkeypatch, flags, unet, text):
    monkeypatch.setattr(features_module, "cpu_features", lambda: CpuFeatures(frozenset(flags), "AVX512"))
    assert precision_for(CPU, "unet") == precision_for(CPU, "vae_decoder") == unet
    assert precision_for(CPU, "text_encoder") == precision_for(CPU, "yolo_seg") == text
    assert precision_for(CPU, "unet", backend="onnxruntime") == "float32"  # no bf16 engines there
    assert precision_for(CPU, "unet", "float32") == "float32"  # forced full precision
    assert precision_for(torch.device("cuda"), "unet") == "float16"


def test_forced_bf16_leaves_the_detectors_fp32():
    assert precision_for(CPU, "unet", "bfloat16") == "bfloat16"
    assert precision_for(CPU, "yolo_seg", "bfloat16") == "float32"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_tile amx_bf16\n\nprocessor\t: 1\n")
    features = CpuFeatures(read_flags(info), "AVX512")
    assert features.amx and features.fast_bf16
    assert features.summary().startswith("bf16 in hardware (AMX); flags: amx_tile, amx_bf16, avx512f")
    assert read_flags(tmp_path / "missing") == frozenset()
    assert not CpuFeatures(frozenset({"avx2"}), "AVX2").fast_bf16


def test_doctor_reports_bf16_support(monkeypatch):
    from refsd_trt import doctor

    monkeypatch.setattr(features_module, "cpu_features", lambda: CpuFeatures(frozenset({"avx512_bf16"}), "AVX512"))
    data = doctor.report()
    assert data["cpu"] == {"amx": False, "fast_bf16": True, "torch_capability": "AVX512",
                           "summary": data["cpu"]["summary"]}
    line = next(line for line in doctor.format_report(data).splitlines() if line.startswith("cpu:"))
    assert line == "cpu: bf16 in hardware (AVX-512 BF16); flags: avx512_bf16; torch kernels: AVX512"


def test_run_config_takes_a_precision():
    from refsd_trt.config import RunConfig

    assert RunConfig(precision="float32").precision == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        RunConfig(precision="int4")


def test_bf16_end_to_end_stays_within_a_few_grey_levels_of_fp32():
    """One inpainted person on the tiny zoo, every diffusion engine bf16 against all fp32: measured
    here at most 6 of 255 grey levels (mean 0.28, 99th percentile 2)."""
    import numpy as np
    from skimage.data import astronaut

    from refsd_trt.api import Anonymizer
    from refsd_trt.types import PersonDetections

    image = astronaut()
    masks = torch.zeros(1, *image.shape[:2], dtype=torch.bool)
    masks[0, 60:500, 120:420] = True
    person = PersonDetections(torch.tensor([[120.0, 60.0, 420.0, 500.0]]), torch.tensor([0.9]), masks)
    out = {}
    for precision in ("float32", "bfloat16"):
        anonymizer = Anonymizer.from_preset("tiny", precision=precision, method="inpaint", verify_identity="off")
        unets = [e for name, e in anonymizer.engines.items() if name.endswith("unet")]
        assert unets and all(e.precision == precision for e in unets)
        out[precision] = anonymizer([image], detections=[person])[0].image.astype(np.int16)
    difference = np.abs(out["float32"] - out["bfloat16"])
    assert 0 < difference.max() <= 12 and difference.mean() < 1.0
