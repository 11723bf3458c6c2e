"""Runtime backends behind one ``Engine`` interface (installed as ``refsd_trt.engine``).

``load_engine`` is the entry point; the TensorRT backend (``tensorrt_backend.TrtEngine``) is
imported only where used, since TensorRT exists on GPU machines only.
"""

from refsd_trt.engine.base import Engine
from refsd_trt.engine.factory import load_engine
from refsd_trt.engine.onnxruntime_backend import OrtEngine
from refsd_trt.engine.torch_backend import TorchEngine

__all__ = ["Engine", "OrtEngine", "TorchEngine", "load_engine"]
