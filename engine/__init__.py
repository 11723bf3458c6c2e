"""Runtime backends behind one ``Engine`` interface (installed as ``refsd_trt.engine``).

``load_engine`` is the entry point. Backends load on first use (PEP 562): ``from refsd_trt.engine
import Engine`` stays cheap, and TensorRT is only imported where a TensorRT engine is built.
"""

from importlib import import_module

from refsd_trt.engine.base import Engine

_LAZY = {
    "OrtEngine": "refsd_trt.engine.onnxruntime_backend",
    "TorchEngine": "refsd_trt.engine.torch_backend",
    "TrtEngine": "refsd_trt.engine.tensorrt_backend",
    "load_engine": "refsd_trt.engine.factory",
}

__all__ = ["Engine", "OrtEngine", "TorchEngine", "TrtEngine", "load_engine"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
