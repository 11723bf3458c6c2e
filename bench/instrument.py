"""Pure engine time: every ``Engine.run`` of a pipeline, timed and recorded with its input shapes.

The pipeline holds its own references to its engines, so the engines are instrumented in place (an
instance attribute ``run`` shadows the class method) rather than swapped. On CUDA each call is
synchronised before and after so its time is the engine's own. That serialises the stream, so on a
GPU the wall time around instrumented calls is that of a serialised pipeline: the overhead it
shows is host work that a full stream would hide only partly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from refsd_trt.engine.base import Engine


@dataclass(frozen=True)
class EngineCall:
    engine: str  # the name the pipeline gives the engine (``Anonymizer.engines``)
    seconds: float
    shapes: tuple[tuple[str, tuple[int, ...], str], ...]  # (input name, shape, dtype) in feed order


@dataclass
class EngineRecorder:
    """``with EngineRecorder(anonymizer.engines) as rec: ...`` then ``rec.calls``."""

    engines: Mapping[str, Engine]
    calls: list[EngineCall] = field(default_factory=list)

    def __enter__(self) -> EngineRecorder:
        seen: set[int] = set()
        for name, engine in self.engines.items():
            if id(engine) not in seen:  # one engine under two names is timed once, under the first
                seen.add(id(engine))
                engine.run = self._timed(name, engine)
        return self

    def __exit__(self, *exc) -> None:
        for engine in self.engines.values():
            engine.__dict__.pop("run", None)

    def _timed(self, name: str, engine: Engine):
        run = type(engine).run.__get__(engine)
        cuda = engine.device.type == "cuda"

        def timed_run(feeds, outputs=None, stream=None):
            if cuda:
                torch.cuda.synchronize(engine.device)
            start = time.perf_counter()
            result = run(feeds, outputs, stream)
            if cuda:
                torch.cuda.synchronize(engine.device)
            shapes = tuple((k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in feeds.items())
            self.calls.append(EngineCall(name, time.perf_counter() - start, shapes))
            return result

        return timed_run
