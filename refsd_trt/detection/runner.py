"""One YOLOv8 engine driven end to end on the device: letterbox a batch, run it, keep the people."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from refsd_trt.detection.letterbox import Letterboxed, letterbox, minimal_shape
from refsd_trt.detection.selection import Selected, select_people
from refsd_trt.engine.base import Engine

# What a letterbox depends on besides the images: (input shape, fit size, dtype). Two engines with
# equal layouts can share one letterboxed batch.
Layout = tuple[tuple[int, int], tuple[int, int], torch.dtype]

IMGSZ = 640  # ultralytics' default letterbox size, the one its models were trained at


class YoloRunner:
    def __init__(self, engine: Engine, person_classes: Sequence[int], extra_rows: int, conf: float, iou: float,
                 max_det: int, imgsz: int, stride: int, objectness: bool = False):
        """``extra_rows``: per-anchor values after the class scores (mask coefficients, keypoints);
        ``objectness``: a YOLOv5 head (rows last, objectness before the class scores)."""
        self.engine, self.conf, self.iou, self.max_det, self.imgsz, self.stride, self.objectness = (
            engine, conf, iou, max_det, imgsz, stride, objectness)
        spec = engine.spec
        rows = next(int(t.shape[-1 if objectness else 1]) for t in spec.outputs if t.name == "output0")
        self.nc = rows - (5 if objectness else 4) - extra_rows
        self.classes = torch.tensor(tuple(person_classes), dtype=torch.int64)
        images = spec.inputs[0]
        self.input_name, self.dtype = images.name, images.torch_dtype(engine.precision)
        # Each input dimension is fixed (an int) or a named axis with a range.
        bounds = [(d, d) if isinstance(d, int) else (spec.axes[d].min, spec.axes[d].max) for d in images.shape]
        self.max_batch = bounds[0][1]
        self.min_shape, self.max_shape = (bounds[2][0], bounds[3][0]), (bounds[2][1], bounds[3][1])
        self.static = self.min_shape == self.max_shape

    def layout(self, sizes: Sequence[tuple[int, int]]) -> Layout:
        """Static engines take their one shape; dynamic ones the batch's minimal stride-multiple
        shape for ``imgsz`` (ultralytics' minimum rectangle), within the spec's range."""
        if self.static:
            return self.min_shape, self.min_shape, self.dtype
        fit = (min(self.imgsz, *self.max_shape),) * 2
        want = minimal_shape(sizes, fit[0], self.stride)
        return (max(want[0], self.min_shape[0]), max(want[1], self.min_shape[1])), fit, self.dtype

    def letterbox(self, images: Sequence[torch.Tensor], layout: Layout) -> Letterboxed:
        shape, fit, dtype = layout
        return letterbox(images, shape, dtype, fit)

    def run(self, batch: Letterboxed) -> tuple[list[Selected], dict[str, torch.Tensor]]:
        """People per image (letterbox pixels) and the raw outputs, on the batch's device. Outputs
        may be the engine's buffers: use them before the next run."""
        device = batch.images.device
        out = self.engine.run({self.input_name: batch.images.to(self.engine.device)})
        out = {name: t.to(device) for name, t in out.items()}
        # NaN scores compare false with conf, so a broken engine would read as "nobody here" and
        # the original would be written: non-finite output is a detection failure instead.
        if not torch.isfinite(out["output0"]).all():
            raise RuntimeError(f"{self.engine.spec.name}: non-finite values in the detector's output")
        if self.classes.device != device:
            self.classes = self.classes.to(device)
        found = select_people(out["output0"], self.nc, self.classes, self.conf, self.iou, self.max_det, self.objectness)
        return found, out
