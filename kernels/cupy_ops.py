"""Fused CuPy implementations of some ops; imported only by :mod:`.dispatch` once CuPy reaches a device.

Each function has the signature and the result of the torch op of the same name. Tensors cross into
CuPy through DLPack (no copies) and kernels run on torch's current stream of the tensor's device, so
they order correctly with surrounding torch work. Kernel sources are ``cuda/*.cu``, compiled by
NVRTC on first use and cached.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import cupy
import numpy as np
import torch

from . import convert

SOURCES = Path(__file__).parent / "cuda"
_THREADS = 256
_MAX_BLOCKS = 65535 * 4  # grid-stride loops cover the rest


@functools.cache
def _module(source: str) -> cupy.RawModule:
    # CuPy compiles lazily and keeps one loaded copy per device
    return cupy.RawModule(code=(SOURCES / source).read_text(), options=("--std=c++14",))


def _kernel(source: str, name: str) -> cupy.RawKernel:
    return _module(source).get_function(name)


# Every kernel of every source, by source file.
KERNELS = {"convert.cu": ("u8_to_float", "float_to_u8"), "paste.cu": ("paste_blend",)}


def compile_all() -> None:
    """Compile and load every kernel on the current device now (NVRTC), so a toolkit or driver that
    cannot build them is found once, before any op relies on them (``dispatch`` then keeps torch)."""
    for source, names in KERNELS.items():
        for name in names:
            _kernel(source, name)


@contextlib.contextmanager
def _torch_stream(t: torch.Tensor) -> Iterator[None]:
    with (
        cupy.cuda.Device(t.device.index),
        cupy.cuda.ExternalStream(torch.cuda.current_stream(t.device).cuda_stream, t.device.index),
    ):
        yield


def _view(t: torch.Tensor) -> cupy.ndarray:
    return cupy.from_dlpack(t)


def _elementwise(
    name: str, src: torch.Tensor, out_dtype: torch.dtype, scale: float, offset: float
) -> torch.Tensor:
    src = src.contiguous()
    out = torch.empty(src.shape, dtype=out_dtype, device=src.device)
    n = src.numel()
    if n:
        blocks = min((n + _THREADS - 1) // _THREADS, _MAX_BLOCKS)
        with _torch_stream(src):
            _kernel("convert.cu", name)(
                (blocks,),
                (_THREADS,),
                (_view(src), _view(out), np.float32(scale), np.float32(offset), np.int64(n)),
            )
    return out


def _u8_to_float(images: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return _elementwise("u8_to_float", images, torch.float32, scale, offset)


def _float_to_u8(x: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
    return _elementwise("float_to_u8", x.to(torch.float32), torch.uint8, 1.0 / scale, offset)


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    return _u8_to_float(images_u8, *convert.SIGNED)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return _float_to_u8(x, *convert.SIGNED)


def u8_to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    return _u8_to_float(images_u8, *convert.UNIT)


def unit_to_u8(x: torch.Tensor) -> torch.Tensor:
    return _float_to_u8(x, *convert.UNIT)


def paste_back(
    canvas: torch.Tensor,
    patches: torch.Tensor,
    boxes: torch.Tensor,
    alphas: torch.Tensor | None = None,
    image_index: torch.Tensor | None = None,
) -> torch.Tensor:
    batched = canvas if canvas.dim() == 4 else canvas.unsqueeze(0)
    count, _, patch_h, patch_w = patches.shape
    if alphas is not None and alphas.shape[-2:] != patches.shape[-2:]:
        raise ValueError(f"alphas {tuple(alphas.shape)} must match the patches' size {tuple(patches.shape)}")
    if count == 0:
        return canvas
    device = canvas.device
    # the kernel blends float32 in place; other dtypes or layouts go through a float32 copy
    work = (
        batched
        if batched.dtype == torch.float32 and batched.is_contiguous()
        else batched.float().contiguous()
    )
    patches = patches.to(device=device, dtype=torch.float32).contiguous()
    alphas = (
        torch.ones((count, 1, patch_h, patch_w), dtype=torch.float32, device=device)
        if alphas is None
        else alphas.to(device=device, dtype=torch.float32).contiguous()
    )
    boxes = boxes.to(device=device, dtype=torch.float32).contiguous()
    image_index = (
        torch.zeros(count, dtype=torch.long, device=device)
        if image_index is None
        else image_index.to(device=device, dtype=torch.long).contiguous()
    )
    images, channels, height, width = work.shape
    with _torch_stream(work):
        _kernel("paste.cu", "paste_blend")(
            ((width + 31) // 32, (height + 7) // 8, images),
            (32, 8, 1),
            (
                _view(work),
                np.int32(channels),
                np.int32(height),
                np.int32(width),
                _view(patches),
                _view(alphas),
                _view(boxes),
                _view(image_index),
                np.int32(count),
                np.int32(patch_h),
                np.int32(patch_w),
            ),
        )
    if work is not batched:
        batched.copy_(work)
    return canvas
