"""Engines of several models that take turns in memory: one model's engines resident at a time.

refsd runs two diffusion models one after the other on each batch (removal, then refinement). Held
together at full size they need 13 GB of host memory for weights alone (SD 1.5 inpainting 4.3 GB in
fp32; SDXL base 8.7 GB, its fp16-only UNet kept in fp16 by the torch backend, 13.9 GB cast to fp32),
besides activations, detectors and avatars; taking turns, the larger one alone. ``OneModelAtATime`` wraps each engine so that it
is built by its factory on first use after a release, and before it is built every engine of the
other models is released (closed, its weights freed and returned to the operating system).

Each engine is built once when it is wrapped: a model that cannot load fails at start-up, and the
engine's spec, precision and backend stay known while it is released. Rebuilding is a load from the
page cache (and, with ``auto``, the recorded backend choice): seconds, against minutes of CPU
denoising per batch.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable, Mapping

import torch

from refsd_trt.engine.base import Engine


def return_freed_memory() -> None:
    """Collect the freed engines and hand glibc's free heap pages back to the system (a freed model's
    smaller tensors otherwise stay in the process's RSS)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class OneModelAtATime:
    """The models whose engines take turns; ``wrap`` each engine under its model's name."""

    def __init__(self) -> None:
        self.models: dict[str, list[ReleasableEngine]] = {}
        self.events: list[tuple[str, str]] = []  # ("load" | "release", model), in order (tests, logs)

    def wrap(self, model: str, build: Callable[[], Engine]) -> ReleasableEngine:
        self.make_room(model)
        engine = ReleasableEngine(build, self, model)
        self.models.setdefault(model, []).append(engine)
        return engine

    def make_room(self, model: str) -> None:
        """Release every engine of the other models."""
        loaded = [e for name, engines in self.models.items() if name != model for e in engines if e.loaded]
        for engine in loaded:
            engine.release()
        if loaded:
            return_freed_memory()


class ReleasableEngine(Engine):
    def __init__(self, build: Callable[[], Engine], group: OneModelAtATime, model: str):
        self._build, self.group, self.model = build, group, model
        self._engine: Engine | None = None
        inner = self.inner
        self.spec, self.device, self.precision = inner.spec, inner.device, inner.precision
        self.fixed_shapes = inner.fixed_shapes

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def backend(self) -> str:  # the last engine built's (auto may choose per load)
        return self._backend

    @property
    def inner(self) -> Engine:
        if self._engine is None:
            self.group.make_room(self.model)
            self._engine = self._build()
            self._backend = self._engine.backend
            self.group.events.append(("load", self.model))
        return self._engine

    def release(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
            self.group.events.append(("release", self.model))

    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor] | None = None,
            stream: torch.cuda.Stream | None = None) -> dict[str, torch.Tensor]:
        return self.inner.run(feeds, outputs, stream)

    def close(self) -> None:
        self.release()
