"""What the harness times on each side (refsd-trt and the baseline): the same steps, named alike.

A side decodes the input files, runs its own detector, anonymizes the images given their people,
and encodes the results. Stage names are canonical across sides and methods; ``ALIASES`` folds a
method's own names into them (the inpaint method's single diffusion stage is its "refine": the
same noise strength over the same person, with no removal before it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from refsd_trt.engine.base import Engine
from refsd_trt.types import PersonDetections

STAGES = ("decode", "detect", "remove", "fit", "render", "refine", "merge", "encode")
ALIASES = {"inpaint": "refine"}
# Time inside ``anonymize`` that no stage claims (host copies, the fail-closed check) is "other".
OTHER = "other"


def canonical(timings: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, seconds in timings.items():
        key = ALIASES.get(name, name)
        out[key] = out.get(key, 0.0) + seconds
    return out


@dataclass
class Anonymized:
    images: list[Any]  # one output per input, in the side's own image type
    people: list[int]  # people each output accounts for (replaced or filled)
    stages: dict[str, float]  # canonical stage -> seconds, over all the images


class Side(Protocol):
    name: str

    @property
    def engines(self) -> Mapping[str, Engine]:
        """The engines whose ``run`` counts as pure engine time (empty: not instrumented)."""

    def decode(self, paths: Sequence[Path]) -> list[Any]: ...

    def detect(self, images: Sequence[Any]) -> list[PersonDetections]:
        """The side's own detector on every image (always timed; its counts are a parity check)."""

    def anonymize(self, images: Sequence[Any], people: Sequence[PersonDetections], keys: Sequence[str]) -> Anonymized:
        """Replace ``people`` (one record per image, the scene's oracle or a detector's output)."""

    def encode(self, images: Sequence[Any], folder: Path) -> None: ...
