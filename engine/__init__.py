"""Runtime backends behind one ``Engine`` interface (installed as ``refsd_trt.engine``)."""

from refsd_trt.engine.base import Engine
from refsd_trt.engine.onnxruntime_backend import OrtEngine
from refsd_trt.engine.torch_backend import TorchEngine

__all__ = ["Engine", "OrtEngine", "TorchEngine"]
