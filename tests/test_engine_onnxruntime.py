"""onnxruntime engine: IOBinding round trips with torch tensors, caller-provided outputs, static fast path."""

from __future__ import annotations

import warnings

import pytest
import torch
from refsd_trt.engine.onnxruntime_backend import OrtEngine
from refsd_trt.export.specs import AxisRange, ModelSpec, TensorSpec
from torch import nn


class Upsampler(nn.Module):
    """A decoder-shaped toy: latents (b, 4, h, w) -> images (b, 3, 8h, 8w), plus a pooled vector."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, latents):
        images = nn.functional.interpolate(self.conv(latents), scale_factor=8.0, mode="nearest")
        return images, latents.mean(dim=(2, 3))


SPEC = ModelSpec(
    name="toy_decoder",
    inputs=(TensorSpec("latents", "float", ("batch", 4, "latent_height", "latent_width")),),
    outputs=(TensorSpec("images", "float", ("batch", 3, "height", "width")),
             TensorSpec("pooled", "float", ("batch", 4))),
    axes={"batch": AxisRange(1, 2, 8), "height": AxisRange(64, 128, 256), "width": AxisRange(64, 128, 256)},
    derived={"latent_height": ("height", 1, 8), "latent_width": ("width", 1, 8)},
)


def _export(path, dynamic: bool, half: bool = False):
    model = Upsampler().eval()
    torch.manual_seed(0)
    example = SPEC.example_inputs(batch=1, height=64, width=64)["latents"]
    if half:
        model, example = model.half(), example.half()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=list(SPEC.input_names),
                          output_names=list(SPEC.output_names), dynamic_axes=SPEC.dynamic_axes() if dynamic else None,
                          opset_version=17, dynamo=False)
    return model


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("ort") / "toy.onnx"
    return _export(path, dynamic=True), path


def test_round_trip_matches_torch_at_two_shapes(dynamic_model):
    model, path = dynamic_model
    engine = OrtEngine(SPEC, path, threads=1)
    assert engine.backend == "onnxruntime-cpu" and engine.precision == "float32"
    for axes in ({"batch": 1, "height": 64, "width": 64}, {"batch": 4, "height": 128, "width": 96}):
        feeds = SPEC.example_inputs(**axes)
        engine.check_feeds(feeds)
        got = engine.run(feeds)
        want = model(feeds["latents"])
        for name, ref in zip(SPEC.output_names, want):
            assert got[name].shape == ref.shape
            torch.testing.assert_close(got[name], ref, atol=1e-5, rtol=1e-5)


def test_outputs_are_written_into_caller_tensors(dynamic_model):
    model, path = dynamic_model
    engine = OrtEngine(SPEC, path, threads=1)
    feeds = SPEC.example_inputs(batch=2, height=64, width=128)
    images, pooled = torch.full((2, 3, 64, 128), float("nan")), torch.empty(2, 4)
    got = engine.run(feeds, outputs={"images": images, "pooled": pooled})
    assert got["images"].data_ptr() == images.data_ptr() and got["pooled"].data_ptr() == pooled.data_ptr()
    torch.testing.assert_close(images, model(feeds["latents"])[0], atol=1e-5, rtol=1e-5)


def test_prepared_buffers_are_reused(dynamic_model):
    _, path = dynamic_model
    engine = OrtEngine(SPEC, path, threads=1)
    engine.prepare(batch=1, height=64, width=64)
    feeds = SPEC.example_inputs(batch=1, height=64, width=64)
    first = engine.run(feeds)["images"]
    assert engine.run(feeds)["images"].data_ptr() == first.data_ptr()


def test_static_file_is_prepared_at_construction(tmp_path):
    path = tmp_path / "static.onnx"
    _export(path, dynamic=False)
    engine = OrtEngine(SPEC, path, threads=1)
    (buffers,) = engine._buffers.values()
    got = engine.run(SPEC.example_inputs(batch=1, height=64, width=64))
    assert got["images"].data_ptr() == buffers["images"].data_ptr()


def test_fp16_file_sets_precision_and_rejects_fp32_feeds(tmp_path):
    path = tmp_path / "half.onnx"
    _export(path, dynamic=True, half=True)
    engine = OrtEngine(SPEC, path, threads=1)
    assert engine.precision == "float16"
    feeds = SPEC.example_inputs("float16", batch=1, height=64, width=64)
    assert engine.run(feeds)["images"].dtype == torch.float16
    with pytest.raises(TypeError, match="float32"):
        engine.check_feeds(SPEC.example_inputs(batch=1, height=64, width=64))
    with pytest.raises(ValueError, match="float16 model"):
        OrtEngine(SPEC, path, precision="float32")


def test_spec_that_does_not_fit_the_file_is_refused(dynamic_model):
    _, path = dynamic_model
    other = ModelSpec(name="wrong", inputs=(TensorSpec("sample", "float", ("batch", 4)),), outputs=SPEC.outputs,
                      axes=SPEC.axes)
    with pytest.raises(ValueError, match="does not match spec wrong"):
        OrtEngine(other, path)


@pytest.mark.gpu
def test_cuda_round_trip_without_host_copies(dynamic_model):
    model, path = dynamic_model
    pytest.importorskip("onnxruntime", reason="needs onnxruntime-gpu")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu with the CUDA execution provider")
    engine = OrtEngine(SPEC, path, device="cuda")
    feeds = SPEC.example_inputs(device="cuda", batch=2, height=64, width=64)
    out = torch.empty(2, 3, 64, 64, device="cuda")
    stream = torch.cuda.Stream()
    got = engine.run(feeds, outputs={"images": out}, stream=stream)
    stream.synchronize()
    assert got["images"].data_ptr() == out.data_ptr()
    torch.testing.assert_close(out.cpu(), model(feeds["latents"].cpu())[0], atol=1e-4, rtol=1e-4)


def test_rebinding_is_skipped_only_while_the_tensors_are_the_same(dynamic_model):
    model, path = dynamic_model
    engine = OrtEngine(SPEC, path, threads=1)
    feeds = SPEC.example_inputs(batch=1, height=64, width=64)
    engine.run(feeds)
    feeds["latents"].mul_(-2)  # same tensor, new contents: the kept binding must see them
    torch.testing.assert_close(engine.run(feeds)["pooled"], model(feeds["latents"])[1], atol=1e-5, rtol=1e-5)
    other = {"latents": torch.randn(1, 4, 8, 8)}  # a different tensor of the same shape is rebound
    torch.testing.assert_close(engine.run(other)["pooled"], model(other["latents"])[1], atol=1e-5, rtol=1e-5)
