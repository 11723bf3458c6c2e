"""CUDA side of refsd_trt.kernels: every kernels/cuda/*.cu compiles with nvcc (runs wherever nvcc
exists, GPU or not), and on a GPU the fused CuPy path matches the torch path."""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import refsd_trt.kernels as K
import torch
from refsd_trt.kernels import dispatch

CUDA_SOURCES = sorted((Path(K.__file__).parent / "cuda").glob("*.cu"))


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    fallback = Path("/usr/local/cuda/bin/nvcc")
    return str(fallback) if fallback.exists() else None


def test_there_are_cuda_sources():
    assert {p.name for p in CUDA_SOURCES} >= {"convert.cu", "paste.cu"}


@pytest.mark.parametrize("source", CUDA_SOURCES, ids=lambda p: p.name)
def test_cuda_source_compiles_with_nvcc(source, tmp_path):
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found on PATH or in /usr/local/cuda/bin: cannot compile the CUDA sources here")
    result = subprocess.run(
        [nvcc, "-std=c++14", "--Werror", "all-warnings", "-c", "-o", str(tmp_path / "out.o"), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def load_nvrtc() -> ctypes.CDLL | None:
    """NVRTC, the runtime compiler cupy.RawModule uses: torch's CUDA wheels ship it (nvidia/cu*/lib)."""
    candidates = glob.glob(
        os.path.join(sys.prefix, "lib", "python3*", "site-packages", "nvidia", "*", "lib", "libnvrtc.so.*")
    )
    candidates += glob.glob("/usr/local/cuda/lib64/libnvrtc.so*")
    for path in sorted(c for c in candidates if "alt" not in os.path.basename(c)):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


@pytest.mark.parametrize("source", CUDA_SOURCES, ids=lambda p: p.name)
def test_cuda_source_compiles_with_nvrtc_like_cupy_rawmodule(source):
    nvrtc = load_nvrtc()
    if nvrtc is None:
        pytest.skip(
            "no libnvrtc found (torch's nvidia wheels or /usr/local/cuda/lib64): cannot run NVRTC here"
        )
    program = ctypes.c_void_p()
    code = source.read_bytes()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), code, source.name.encode(), 0, None, None) == 0
    options = [b"--std=c++14", b"-arch=compute_75"]  # the options cupy_ops passes, plus an explicit arch
    argv = (ctypes.c_char_p * len(options))(*options)
    status = nvrtc.nvrtcCompileProgram(program, len(options), argv)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    assert status == 0, log.value.decode(errors="replace")


# --- GPU only --------------------------------------------------------------------------------------


def scene(device: str = "cuda") -> dict:
    """Overlapping instances, partly outside the canvas, a degenerate box, two images."""
    gen = torch.Generator().manual_seed(0)
    boxes = torch.tensor(
        [
            [10.3, 5.7, 90.2, 70.9],
            [50.0, 40.0, 130.5, 99.0],
            [-20.0, -8.5, 30.0, 25.0],
            [60.0, 60.0, 60.0, 80.0],
        ]
    )
    return {
        "canvas": torch.rand(2, 3, 96, 128, generator=gen).to(device),
        "patches": torch.rand(4, 3, 32, 24, generator=gen).to(device),
        "boxes": boxes.to(device),
        "alphas": torch.rand(4, 1, 32, 24, generator=gen).to(device),
        "image_index": torch.tensor([1, 1, 0, 1]).to(device),
    }


@pytest.mark.gpu
def test_dispatch_selects_cupy_for_cuda_tensors():
    pytest.importorskip("cupy")
    if os.environ.get(dispatch.BACKEND_ENV, "").lower() == "torch":
        pytest.skip(f"{dispatch.BACKEND_ENV}=torch forces the torch path")
    from refsd_trt.kernels import cupy_ops

    assert dispatch.fused("paste_back") is cupy_ops.paste_back
    assert dispatch.fused("to_float") is cupy_ops.to_float


@pytest.mark.gpu
def test_cupy_conversions_match_torch():
    pytest.importorskip("cupy")
    from refsd_trt.kernels import cupy_ops

    images = torch.randint(0, 256, (2, 3, 37, 53), dtype=torch.uint8, device="cuda")
    for fused, reference in [
        (cupy_ops.to_float, K.to_float.torch),
        (cupy_ops.u8_to_unit, K.u8_to_unit.torch),
    ]:
        assert torch.allclose(fused(images), reference(images), rtol=0, atol=1e-6)
    x = torch.randn(2, 3, 37, 53, device="cuda") * 1.5
    x[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    for fused, reference in [
        (cupy_ops.to_uint8, K.to_uint8.torch),
        (cupy_ops.unit_to_u8, K.unit_to_u8.torch),
    ]:
        assert torch.equal(fused(x), reference(x))
    values = torch.arange(256, dtype=torch.uint8, device="cuda")
    assert torch.equal(K.to_uint8(K.to_float(values)), values)


@pytest.mark.gpu
@pytest.mark.parametrize("with_alpha", [True, False])
def test_cupy_paste_back_matches_torch(with_alpha):
    pytest.importorskip("cupy")
    from refsd_trt.kernels import cupy_ops

    s = scene()
    alphas = s["alphas"] if with_alpha else None
    expected = K.paste_back.torch(s["canvas"].clone(), s["patches"], s["boxes"], alphas, s["image_index"])
    canvas = s["canvas"].clone()
    out = cupy_ops.paste_back(canvas, s["patches"], s["boxes"], alphas, s["image_index"])
    assert out is canvas
    assert torch.allclose(canvas, expected, atol=1e-5)
    # one image (C, H, W), and a non-float32 canvas through the float32 copy
    single = s["canvas"][1].half()
    expected = K.paste_back.torch(single.float(), s["patches"], s["boxes"], alphas)
    cupy_ops.paste_back(single, s["patches"], s["boxes"], alphas)
    assert torch.allclose(single.float(), expected, atol=2e-3)


@pytest.mark.gpu
def test_cupy_coverage_merge_matches_torch_and_cpu():
    pytest.importorskip("cupy")
    s = scene()
    coverages = torch.tensor([3.0, 1.0, 2.0, 1.0], device="cuda")
    gpu = K.coverage_merge(
        s["canvas"].clone(), s["patches"], s["boxes"], s["alphas"], coverages, s["image_index"]
    )
    c = {k: v.cpu() for k, v in s.items()}
    cpu = K.coverage_merge(
        c["canvas"], c["patches"], c["boxes"], c["alphas"], coverages.cpu(), c["image_index"]
    )
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)


@pytest.mark.gpu
def test_torch_path_makes_no_host_round_trips_on_cuda(monkeypatch):
    monkeypatch.setattr(dispatch, "_cupy_ops", lambda: None)
    s = scene()
    images_u8 = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8, device="cuda")
    masks = torch.rand(4, 1, 96, 128, device="cuda") > 0.7
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        images = K.to_float(images_u8)
        K.to_uint8(images)
        boxes = K.square_boxes(s["boxes"], 1.1, image_size=(96, 128))
        crops = K.crop_resize(images, boxes, s["image_index"], (32, 24))
        crop_masks = K.crop_resize(masks, boxes, s["image_index"], (32, 24), mode="nearest")
        alphas = K.feather(K.dilate(crop_masks, 2), 3)
        K.coverage_merge(images, crops, boxes, alphas, K.coverage(masks), s["image_index"])
    finally:
        torch.cuda.set_sync_debug_mode("default")
