"""The CUDA kernels' arithmetic, checked on CPU: each kernels/cuda/*.cu is compiled as host C++ with
a shim that runs every (block, thread) of a launch in a loop, then compared with the torch path.

This catches indexing, rounding and convention errors in the kernels on machines without a GPU;
the gpu-marked tests in test_kernels_cuda.py check the real CuPy launch path.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import refsd_trt.kernels as K
import torch
from refsd_trt.kernels import convert

CUDA_DIR = Path(K.__file__).parent / "cuda"

SHIM = r"""
#include <algorithm>
#include <cmath>
struct Dim3 { unsigned x, y, z; };
static Dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
using std::min;
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
#include "convert.cu"
#include "paste.cu"

template <class... A>
static void launch(void (*kernel)(A...), unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, A... args) {
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, 1};
    for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x)
        for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx) {
            blockIdx = {x, y, z};
            threadIdx = {tx, ty, 0};
            kernel(args...);
        }
}

extern "C" void emu_u8_to_float(unsigned blocks, unsigned threads, const unsigned char* src, float* dst,
                                float scale, float offset, long long n) {
    launch(u8_to_float, blocks, 1, 1, threads, 1, src, dst, scale, offset, n);
}
extern "C" void emu_float_to_u8(unsigned blocks, unsigned threads, const float* src, unsigned char* dst,
                                float inv_scale, float offset, long long n) {
    launch(float_to_u8, blocks, 1, 1, threads, 1, src, dst, inv_scale, offset, n);
}
extern "C" void emu_paste_blend(unsigned gx, unsigned gy, unsigned gz, float* canvas, int C, int H, int W,
                                const float* patches, const float* alphas, const float* boxes,
                                const long long* image_index, int N, int h, int w) {
    launch(paste_blend, gx, gy, gz, 32u, 8u, canvas, C, H, W, patches, alphas, boxes, image_index, N, h, w);
}
"""


@pytest.fixture(scope="module")
def emulated(tmp_path_factory) -> ctypes.CDLL:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no host C++ compiler (g++/c++) to build the kernel emulation")
    build = tmp_path_factory.mktemp("kernel-emulation")
    (build / "shim.cpp").write_text(SHIM)
    library = build / "libemulated.so"
    subprocess.run(
        [
            compiler,
            "-std=c++14",
            "-O1",
            "-ffp-contract=off",
            "-shared",
            "-fPIC",
            "-I",
            str(CUDA_DIR),
            "-o",
            str(library),
            str(build / "shim.cpp"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    lib = ctypes.CDLL(str(library))
    u, f, i64, ptr = ctypes.c_uint, ctypes.c_float, ctypes.c_longlong, ctypes.c_void_p
    lib.emu_u8_to_float.argtypes = lib.emu_float_to_u8.argtypes = [u, u, ptr, ptr, f, f, i64]
    i = ctypes.c_int
    lib.emu_paste_blend.argtypes = [u, u, u, ptr, i, i, i, ptr, ptr, ptr, ptr, i, i, i]
    return lib


def test_conversion_kernels_match_torch(emulated):
    images = torch.randint(0, 256, (2, 3, 17, 19), dtype=torch.uint8)
    n = images.numel()
    for scale, offset in (convert.SIGNED, convert.UNIT):
        out = torch.empty(images.shape)
        emulated.emu_u8_to_float(
            3, 64, images.data_ptr(), out.data_ptr(), scale, offset, n
        )  # grid-stride loop
        assert torch.equal(out, convert.u8_to_float(images, scale, offset))
        x = torch.randn(images.shape) * 1.5
        x.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
        back = torch.empty(images.shape, dtype=torch.uint8)
        emulated.emu_float_to_u8(3, 64, x.data_ptr(), back.data_ptr(), 1.0 / scale, offset, n)
        assert torch.equal(back, convert.float_to_u8(x, scale, offset))


@pytest.mark.parametrize("with_alpha", [True, False])
def test_paste_kernel_matches_torch_paste_back(emulated, with_alpha):
    gen = torch.Generator().manual_seed(0)
    canvas = torch.rand(2, 3, 40, 56, generator=gen)
    patches = torch.rand(4, 3, 12, 9, generator=gen)
    alphas = torch.rand(4, 1, 12, 9, generator=gen) if with_alpha else torch.ones(4, 1, 12, 9)
    # overlapping, partly outside, sub-pixel, and a degenerate (zero-width) box
    boxes = torch.tensor(
        [[4.3, 2.7, 40.2, 30.9], [20.0, 15.0, 60.5, 45.0], [-9.0, -4.5, 12.0, 10.0], [30.0, 5.0, 30.0, 9.0]]
    )
    image_index = torch.tensor([1, 1, 0, 1])
    expected = K.paste_back.torch(canvas.clone(), patches, boxes, alphas if with_alpha else None, image_index)
    emulated.emu_paste_blend(
        (56 + 31) // 32, (40 + 7) // 8, 2, canvas.data_ptr(), 3, 40, 56,
        patches.data_ptr(), alphas.data_ptr(), boxes.data_ptr(), image_index.data_ptr(), 4, 12, 9,
    )  # fmt: skip
    assert torch.allclose(canvas, expected, atol=1e-5)
