"""The decisions of the GPU backends, checked on the CPU: the stream handle onnxruntime gets, a silent
CPU fallback, TensorRT's binding alignment and address checks, the engine precision rule, the
activation-memory size, the per-use profiles, and the UNet's timestep feed. What only a GPU can
show (that the work really orders, captures and runs) is `refsd-trt doctor --gpu-check`'s job."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from refsd_trt.config import RunConfig
from refsd_trt.engine import onnxruntime_backend as ortb
from refsd_trt.engine import tensorrt_backend as trtb
from refsd_trt.export.specs import AxisRange

CUDA0 = torch.device("cuda", 0)


# --- streams: onnxruntime must get a real stream, and must have taken it --------------------------

def test_torch_default_stream_handle_is_refused():
    with pytest.raises(ValueError, match="non-default CUDA stream"):
        ortb.stream_options(CUDA0, 0)  # torch.cuda.default_stream().cuda_stream is 0
    assert ortb.stream_options(torch.device("cuda", 1), 0x7F00AB) == {"device_id": 1, "user_compute_stream": str(0x7F00AB)}


def test_cuda_providers_carry_the_engine_stream():
    stream = SimpleNamespace(cuda_stream=12345)
    (cuda, cuda_options), cpu = ortb.default_providers(CUDA0, stream=stream)
    assert cuda == "CUDAExecutionProvider" and cuda_options["user_compute_stream"] == "12345" and cpu == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="stream"):
        ortb.default_providers(CUDA0)
    (trt, trt_options), (cuda, _), _ = ortb.default_providers(CUDA0, "tensorrt", stream=stream)
    assert trt == "TensorrtExecutionProvider" and trt_options["user_compute_stream"] == "12345"
    assert trt_options["trt_engine_cache_enable"] and trt_options["trt_timing_cache_enable"]
    assert trt_options["trt_engine_cache_path"] == trt_options["trt_timing_cache_path"]


def test_a_session_on_its_own_stream_or_on_the_cpu_is_refused():
    taken = {"CUDAExecutionProvider": {"has_user_compute_stream": "1", "user_compute_stream": "12345"}}
    ortb.check_session(CUDA0, ["CUDAExecutionProvider", "CPUExecutionProvider"], taken)
    with pytest.raises(RuntimeError, match="did not take the engine's CUDA stream"):
        ortb.check_session(CUDA0, ["CUDAExecutionProvider", "CPUExecutionProvider"],
                           {"CUDAExecutionProvider": {"has_user_compute_stream": "0"}})
    with pytest.raises(RuntimeError, match="fell back to CPUExecutionProvider.*onnxruntime-gpu"):
        ortb.check_session(CUDA0, ["CPUExecutionProvider"], {}, available=["CPUExecutionProvider"])
    with pytest.raises(RuntimeError, match="failed to load"):
        ortb.check_session(CUDA0, ["CPUExecutionProvider"], {}, available=["CUDAExecutionProvider", "CPUExecutionProvider"])
    ortb.check_session(torch.device("cpu"), ["CPUExecutionProvider"], {})  # the CPU is what a CPU engine asks for


# --- TensorRT bindings -----------------------------------------------------------------------------

def test_alignment_rule_and_checked_addresses():
    assert trtb.aligned(0x7F0000000000) and trtb.aligned(512) and not trtb.aligned(512 + 16)
    calls = []

    class Context:
        def set_tensor_address(self, name, pointer):
            calls.append((name, pointer))
            return name != "unknown"

    trtb.set_address(Context(), "sample", 4096)
    with pytest.raises(RuntimeError, match="refused the address of tensor unknown"):
        trtb.set_address(Context(), "unknown", 4096)
    with pytest.raises(ValueError, match="256-byte aligned"):
        trtb.set_address(Context(), "timestep", 4096 + 8)  # row 1 of a (steps, 2) fp32 schedule
    assert calls == [("sample", 4096), ("unknown", 4096)]


def test_a_row_of_a_larger_tensor_is_not_bound_in_place():
    rows = torch.arange(30 * 2, dtype=torch.float32).reshape(30, 2)
    assert not trtb.bindable(rows[1], torch.float32, torch.device("cpu"))  # 8 bytes past row 0
    assert not trtb.bindable(rows.t(), torch.float32, torch.device("cpu"))  # strided
    assert not trtb.bindable(rows, torch.float16, torch.device("cpu"))  # another dtype
    big = torch.empty(4096, dtype=torch.uint8)
    offset = (-big.data_ptr()) % 256
    assert trtb.bindable(big[offset:offset + 256], torch.uint8, torch.device("cpu"))


def test_precision_counts_outputs():
    # An fp16 text encoder: int64 token ids in, fp16 hidden states out.
    assert trtb.engine_precision([torch.int64, torch.float16, torch.float16]) == "float16"
    # An fp16 UNet keeps its timestep and time_ids fp32: still an fp16 engine.
    assert trtb.engine_precision([torch.float16, torch.float32, torch.float16]) == "float16"
    assert trtb.engine_precision([torch.int64, torch.float32]) == "float32"


def test_device_memory_size_on_tensorrt_10_and_11():
    assert trtb.device_memory_size(SimpleNamespace(device_memory_size_v2=0)) == 0  # TensorRT 11: no v1 attribute
    assert trtb.device_memory_size(SimpleNamespace(device_memory_size_v2=5, device_memory_size=9)) == 5
    assert trtb.device_memory_size(SimpleNamespace(device_memory_size=9)) == 9  # TensorRT 10.0


# --- per-use profiles ------------------------------------------------------------------------------

def test_profiles_and_timing_shapes_follow_the_rows_each_engine_runs():
    from refsd_trt.methods import diffusion_rows, engine_profile, timing_axes

    config = dataclasses.replace(RunConfig(), crop_batch_size=3, guidance_scale=5.0, removal_guidance_scale=7.5,
                                 strength=0.6)
    assert timing_axes("unet", config, "inpainter") == {"batch": 6}  # guided: each crop twice
    # and at the working size the stage runs (the spec's smallest, 256², is not the shape that runs)
    assert timing_axes("vae_decoder", config, "refiner", 1024) == {"batch": 3, "height": 1024, "width": 1024}
    assert diffusion_rows("vae_encoder", config, "inpainter") == 6  # image and masked image, one call
    assert diffusion_rows("vae_encoder", config, "removal") == 3  # strength 1: the masked image only
    assert diffusion_rows("vae_decoder", config, "refiner") == 3
    unguided = dataclasses.replace(config, guidance_scale=1.0)
    assert diffusion_rows("unet", unguided, "refiner") == 3
    profile = engine_profile("unet", config, "refiner", size=1024)
    assert profile["batch"] == AxisRange(1, 6, 6)
    assert profile["height"].opt == profile["width"].opt == 1024
    assert engine_profile("vae_decoder", config, "removal", size=512)["height"].opt == 512
    assert engine_profile("text_encoder", config, "refiner") == {}


# --- the UNet's timestep feed ----------------------------------------------------------------------

def test_denoise_feeds_one_persistent_timestep_tensor(zoo):
    from refsd_trt.diffusion.denoise import UNetConditioning, denoise
    from refsd_trt.diffusion.timesteps import start_schedule
    from refsd_trt.engine.factory import load_engine

    unet = load_engine(zoo("sd-inpaint"), "unet", backend="torch")
    seen = []

    class Spy:
        spec, precision, device, fixed_shapes = unet.spec, unet.precision, unet.device, False

        def run(self, feeds, outputs=None, stream=None):
            seen.append((feeds["timestep"], feeds["timestep"].clone()))
            return unet.run(feeds, outputs)

    import diffusers

    scheduler = diffusers.EulerDiscreteScheduler.from_pretrained(zoo("sd-inpaint"), subfolder="scheduler")
    schedule = start_schedule(scheduler, 3, 1.0)
    latents = torch.randn(1, 4, 8, 8)
    cond = UNetConditioning(torch.randn(2, 77, unet.spec.inputs[2].shape[2]),
                            extra_channels=torch.randn(1, 5, 8, 8))
    denoise(Spy(), schedule, latents, cond, 5.0, {})
    tensors = {t.data_ptr() for t, _ in seen}
    assert len(seen) == 3 and len(tensors) == 1  # the same tensor every step: one address to bind
    assert seen[0][0].storage_offset() == 0 and seen[0][0].dtype == torch.float32
    values = [float(v[0]) for _, v in seen]
    assert values == [float(t) for t in schedule.timesteps]


# --- CuPy kernels that do not compile leave the torch path in place --------------------------------

def _fake_cupy(raw_module):
    runtime = SimpleNamespace(getDeviceCount=lambda: 1, CUDARuntimeError=RuntimeError)
    return SimpleNamespace(cuda=SimpleNamespace(runtime=runtime), RawModule=raw_module)


@pytest.mark.parametrize("compiles", [False, True])
def test_cupy_kernels_are_compiled_once_or_torch_keeps_the_ops(monkeypatch, caplog, compiles):
    import sys

    from refsd_trt.kernels import dispatch

    def raw_module(code, options):
        if not compiles:
            raise RuntimeError("nvrtc: error: failed to open libnvrtc-builtins.so")
        return SimpleNamespace(get_function=lambda name: name)

    monkeypatch.delenv(dispatch.BACKEND_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(raw_module))
    monkeypatch.delitem(sys.modules, "refsd_trt.kernels.cupy_ops", raising=False)
    monkeypatch.delattr(sys.modules["refsd_trt.kernels"], "cupy_ops", raising=False)  # `from . import` reads it
    dispatch._cupy_ops.cache_clear()
    try:
        with caplog.at_level("WARNING", logger=dispatch.__name__):
            fused = dispatch.fused("to_float")
        if compiles:
            assert fused is not None and fused.__name__ == "to_float"
        else:
            assert fused is None and "do not compile" in caplog.text
    finally:
        dispatch._cupy_ops.cache_clear()
        sys.modules.pop("refsd_trt.kernels.cupy_ops", None)
        vars(sys.modules["refsd_trt.kernels"]).pop("cupy_ops", None)  # imported here with a fake cupy


# --- refsd-trt doctor --gpu-check ------------------------------------------------------------------

def test_gpu_check_says_in_one_line_that_there_is_no_gpu(monkeypatch):
    from refsd_trt import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lines = []
    assert gpu_check.run(lines.append) == 2
    assert len(lines) == 1 and lines[0].startswith("no NVIDIA GPU visible")


def test_gpu_check_stops_at_the_first_broken_layer(monkeypatch):
    from refsd_trt import gpu_check

    def broken():
        raise RuntimeError("onnxruntime fell back to CPUExecutionProvider\nsecond line")

    def absent():
        raise gpu_check.Skip("CuPy is not installed")

    ran = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "checks", lambda work: [
        ("first", lambda: "fine"), ("optional", absent), ("broken", broken), ("after", lambda: ran.append(1) or "")])
    lines = []
    assert gpu_check.run(lines.append) == 1
    assert [line.split()[0] for line in lines] == ["OK", "SKIP", "FAIL"] and not ran
    assert lines[2] == "FAIL  3. broken: RuntimeError: onnxruntime fell back to CPUExecutionProvider"


def test_auto_times_a_diffusion_engine_at_its_working_size(monkeypatch):
    from refsd_trt import engine, methods

    asked = {}
    monkeypatch.setattr(engine, "load_engine", lambda source, component, **kwargs: asked.update(kwargs))
    make = methods._engine_factory(RunConfig(crop_batch_size=2), torch.device("cpu"))
    make(Path("unused"), "unet", "refiner", 1024)
    assert asked["axes"] == {"batch": 4, "height": 1024, "width": 1024}  # guided: two rows per crop
