"""Device compositing ops (installed as ``refsd_trt.kernels``).

Every op takes and returns torch tensors on any device. Ops decorated in :mod:`.dispatch` run a fused
CuPy kernel (``cuda/*.cu``) on CUDA tensors when CuPy is installed, the torch code otherwise.
"""

if __name__ != "refsd_trt.kernels":
    # Imported as a top-level ``kernels`` because a source checkout's root is on sys.path
    # (``python -m pytest``, a notebook). transformers and diffusers probe for Hugging Face's
    # package of that name and import it to read its version: stay an empty module without one,
    # which they read as "not installed"; any name asked of it says where the ops live.
    def __getattr__(name: str):
        raise AttributeError(f"refsd-trt's kernels/ installs as refsd_trt.kernels; there is no kernels.{name}")

else:
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
