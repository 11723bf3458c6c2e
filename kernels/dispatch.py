"""The one place that decides whether an op runs as a fused CuPy kernel or as plain torch code.

Public ops are torch functions decorated with :func:`fusable`. When their first argument is a CUDA
tensor and CuPy can reach a device and compile every kernel (checked once), the decorator calls
the same-named function of :mod:`.cupy_ops` instead; everything else (CPU tensors, no CuPy, ``REFSD_TRT_KERNELS=torch``) runs the
torch body. Both paths take and return torch tensors, so callers never learn which one ran.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)

#: Set to ``torch`` to keep every op on the torch path (debugging, A/B timing).
BACKEND_ENV = "REFSD_TRT_KERNELS"


@functools.cache
def _cupy_ops() -> ModuleType | None:
    if os.environ.get(BACKEND_ENV, "").lower() == "torch":
        return None
    try:
        import cupy
    except ImportError:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return None
    except cupy.cuda.runtime.CUDARuntimeError:  # CuPy installed on a machine without a usable driver
        return None
    from . import cupy_ops

    try:
        cupy_ops.compile_all()
    except Exception as exc:  # noqa: BLE001 -- NVRTC, a missing CUDA header, a driver too old for the PTX
        log.warning("CuPy kernels do not compile here, every op runs its torch code: %s: %s",
                    type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        return None
    return cupy_ops


def fused(name: str) -> Callable[..., Any] | None:
    """The CuPy implementation of op ``name``, or None where CuPy/a device is missing or none exists."""
    ops = _cupy_ops()
    return getattr(ops, name, None) if ops is not None else None


def fusable(fn: F) -> F:
    """Route calls on CUDA tensors to a fused CuPy kernel of the same name when one is available.

    The torch body stays reachable as ``op.torch`` (tests compare the two paths with it).
    """

    @functools.wraps(fn)
    def op(*args: Any, **kwargs: Any) -> Any:
        first = args[0] if args else next(iter(kwargs.values()), None)
        if isinstance(first, torch.Tensor) and first.is_cuda:
            impl = fused(fn.__name__)
            if impl is not None:
                return impl(*args, **kwargs)
        return fn(*args, **kwargs)

    op.torch = fn  # type: ignore[attr-defined]
    return op  # type: ignore[return-value]
