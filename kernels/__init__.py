"""Device compositing ops (installed as ``refsd_trt.kernels``).

Every op takes and returns torch tensors on any device. Ops decorated in :mod:`.dispatch` run a fused
CuPy kernel (``cuda/*.cu``) on CUDA tensors when CuPy is installed, the torch code otherwise.
"""

if __name__ != "refsd_trt.kernels":  # imported as a top-level module from a source checkout
    raise ImportError(
        "refsd-trt's kernels/ installs as refsd_trt.kernels; it is not a top-level 'kernels' module"
    )

from .blend import alpha_blend, paste_back
from .boxes import square_boxes
from .convert import to_float, to_uint8, u8_to_unit, unit_to_u8
from .coverage import coverage, coverage_merge, coverage_order
from .morphology import dilate, feather, gaussian_blur
from .resample import crop_resize

__all__ = [
    "alpha_blend",
    "coverage",
    "coverage_merge",
    "coverage_order",
    "crop_resize",
    "dilate",
    "feather",
    "gaussian_blur",
    "paste_back",
    "square_boxes",
    "to_float",
    "to_uint8",
    "u8_to_unit",
    "unit_to_u8",
]
