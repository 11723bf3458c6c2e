"""An engine that runs a large batch as consecutive smaller ones, writing each into its slice of
the outputs.

On CPUs a bigger batch is not always cheaper per item: an image model's activations outgrow the
caches (the tiny SDXL VAE decoder: 54 ms per crop one at a time, 61 ms per crop four at a time, on
2 cores), while on GPUs batching wins. ``load_engine(..., backend="auto")`` measures which holds
for each engine and wraps it here where single items are faster.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from refsd_trt.engine.base import Engine
from refsd_trt.modelspec import ModelSpec

BATCH_AXIS = "batch"


def splittable(spec: ModelSpec) -> bool:
    """Whether every input and output leads with the batch axis, so item i only sees item i."""
    return all(t.shape and t.shape[0] == BATCH_AXIS for t in (*spec.inputs, *spec.outputs))


class MicroBatched(Engine):
    def __init__(self, inner: Engine, size: int):
        if size < 1:
            raise ValueError(f"micro-batch size must be at least 1, got {size}")
        self.inner, self.size = inner, size
        self.spec, self.device, self.precision = inner.spec, inner.device, inner.precision
        self.backend = f"{inner.backend} (micro-batch {size})"
        self.fixed_shapes = inner.fixed_shapes
        if not splittable(self.spec):
            raise ValueError(f"{self.spec.name}: only models whose inputs and outputs all lead with the "
                             "batch axis can be split into micro-batches")
        self._buffers: dict[tuple, dict[str, torch.Tensor]] = {}

    def prepare_shapes(self, input_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
        """Output buffers for one set of full-batch input shapes."""
        key = tuple(tuple(input_shapes[n]) for n in self.spec.input_names)
        if key not in self._buffers:
            axes = self.spec.axes_of(input_shapes)
            dtype = {t.name: t.torch_dtype(self.precision) for t in self.spec.outputs}
            self._buffers[key] = {name: torch.empty(shape, dtype=dtype[name], device=self.device)
                                  for name, shape in self.spec.output_shapes(**axes).items()}
        return self._buffers[key]

    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor] | None = None,
            stream: torch.cuda.Stream | None = None) -> dict[str, torch.Tensor]:
        batch = feeds[self.spec.input_names[0]].shape[0]
        if batch <= self.size:
            return self.inner.run(feeds, outputs, stream)
        key = tuple(tuple(feeds[n].shape) for n in self.spec.input_names)
        buffers = self._buffers.get(key) or self.prepare_shapes({n: feeds[n].shape for n in self.spec.input_names})
        results = {**buffers, **(outputs or {})}
        for start in range(0, batch, self.size):
            part = slice(start, start + self.size)
            self.inner.run({n: x[part] for n, x in feeds.items()}, {n: results[n][part] for n in self.spec.output_names},
                           stream)
        return {name: results[name] for name in self.spec.output_names}

    def close(self) -> None:
        self._buffers.clear()
        self.inner.close()
