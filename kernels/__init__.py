"""Device compositing ops (installed as ``refsd_trt.kernels``).

Every op takes and returns torch tensors on any device. Ops decorated in :mod:`.dispatch` run a fused
CuPy kernel (``cuda/*.cu``) on CUDA tensors when CuPy is installed, the torch code otherwise.
"""

if __name__ != "refsd_trt.kernels":
    # Imported as a top-level ``kernels`` because a source checkout's root is on sys.path
    # (``python -m pytest``, a notebook), shadowing Hugging Face's package of that name, which
    # transformers (a dependency from 5.25) and diffusers import. Where that package is installed,
    # load it in this module's place; otherwise stay an empty module, which they read as "not
    # installed", and any name asked of it says where the ops live.
    import importlib.machinery as _machinery
    import importlib.util as _util
    import sys as _sys
    from pathlib import Path as _Path

    _checkout = _Path(__file__).resolve().parents[1]
    _spec = _machinery.PathFinder.find_spec(
        __name__, [p for p in _sys.path if _Path(p or ".").resolve() != _checkout])
    if _spec is not None:
        # the import system returns what sys.modules holds once this file has run
        _sys.modules[__name__] = _module = _util.module_from_spec(_spec)
        _spec.loader.exec_module(_module)
    else:
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
