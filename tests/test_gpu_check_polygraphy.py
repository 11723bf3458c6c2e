"""The GPU check's polygraphy comparison (``refsd_trt.gpu_check.compare_runners``), on CPU: the same
helper that sets a TensorRT plan against onnxruntime, here with two ONNX-Runtime runners, a tiny
VAE decoder in fp32 against its fp16 conversion (fp32 inputs and outputs on both)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

pytest.importorskip("polygraphy")

from refsd_trt import gpu_check
from refsd_trt.export.formats import export


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from refsd_trt.models.tiny_zoo import entry_path

    root = tmp_path_factory.mktemp("polygraphy")
    fp32 = export(entry_path("sdxl-vae-fp16-fix"), "vae_decoder", "onnx", root=root / "artifacts")
    half = root / "half.onnx"
    onnx.save(convert_float_to_float16(onnx.load(str(fp32.main_file)), keep_io_types=True), str(half))
    feeds = [{"latents": np.random.default_rng(i).standard_normal((1, 4, 32, 32)).astype(np.float32)} for i in range(2)]
    return fp32.main_file, half, feeds


def test_comparator_passes_fp16_within_its_tolerance_and_states_the_error(decoders):
    fp32, half, feeds = decoders
    found = gpu_check.compare_runners(gpu_check.onnxruntime_runner(half, "fp16"),
                                      gpu_check.onnxruntime_runner(fp32, "fp32"), feeds, gpu_check.POLYGRAPHY_TOLERANCE)
    assert found.passed
    assert list(found.max_abs) == ["images"]
    assert 1e-5 < found.max_abs["images"] < 0.1  # fp16 rounding shows, and stays small


def test_comparator_fails_past_a_tolerance_fp16_cannot_meet(decoders):
    fp32, half, feeds = decoders
    found = gpu_check.compare_runners(gpu_check.onnxruntime_runner(half, "fp16"),
                                      gpu_check.onnxruntime_runner(fp32, "fp32"), feeds, 1e-6)
    assert not found.passed and found.max_abs["images"] > 1e-6


def test_the_same_graph_compares_equal(decoders):
    fp32, _, feeds = decoders
    found = gpu_check.compare_runners(gpu_check.onnxruntime_runner(fp32, "a"), gpu_check.onnxruntime_runner(fp32, "b"),
                                      feeds, 1e-7)
    assert found.passed and found.max_abs == {"images": 0.0}
