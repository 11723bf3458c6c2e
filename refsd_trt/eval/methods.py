"""What ``refsd-trt eval`` compares: the originals themselves (the reference every privacy figure is
read against), refsd-trt's presets, the classical baselines and outputs made elsewhere.

Every method that anonymizes here gets the same people: the shared detections, made once per
original by the embedded default's detector (``Subjects``). Presets receive them through the
Python API's ``detections=`` argument, baselines as dilated masks and boxes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refsd_trt.io import InputError, read_image

log = logging.getLogger(__name__)

Produced = list["np.ndarray | str"]  # per original: the output image, or why there is none


@dataclass(frozen=True)
class Shared:
    """The people every method anonymizes in one original (from the shared detector)."""

    detections: object  # refsd_trt.types.PersonDetections on the CPU (boxes, scores, masks)
    masks: np.ndarray  # (n, H, W) bool: what the baselines remove (see run.dilated_removal_masks)
    boxes: np.ndarray  # (n, 4) float32 xyxy


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # reference | preset | probe | baseline | given
    description: str
    anonymizes: bool  # False for the originals and for the tiny preset (random models)
    produce: Callable[[Sequence[np.ndarray], Sequence[Shared]], Produced]


def reference() -> Method:
    return Method("original", "reference", "the originals themselves: what no anonymization leaves", False,
                  lambda images, shared: [image for image in images])


def preset(name: str, batch_size: int, **overrides) -> Method:
    """A preset run through the Python API on the shared detections, ``batch_size`` images a call."""
    from refsd_trt.presets import PRESETS

    spec = PRESETS[name]

    def produce(images: Sequence[np.ndarray], shared: Sequence[Shared]) -> Produced:
        from refsd_trt.api import Anonymizer

        anonymizer = Anonymizer.from_preset(name, **overrides)
        out: Produced = []
        for start in range(0, len(images), batch_size):
            chunk = slice(start, start + batch_size)
            results = anonymizer(list(images[chunk]), detections=[s.detections for s in shared[chunk]])
            out += [r.image for r in results]
        return out

    label = spec.description if spec.anonymizes else f"{spec.description} (not an anonymization)"
    return Method(name, "preset", label, spec.anonymizes, produce)


# The near-identity probe (refsd_trt.eval.probe) with the identity gate on, and off.
PROBES = {"near-identity": "on", "near-identity-ungated": "off"}


def probe(name: str) -> Method:
    """The near-identity method through the Python API on the shared detections, gated or not."""
    mode = PROBES[name]

    def produce(images: Sequence[np.ndarray], shared: Sequence[Shared]) -> Produced:
        from refsd_trt.api import Anonymizer, build_gate
        from refsd_trt.config import RunConfig
        from refsd_trt.eval.probe import NearIdentity
        from refsd_trt.presets import PRESETS

        config = RunConfig(preset="lite", verify_identity=mode)
        gate, why = build_gate(mode)
        anonymizer = Anonymizer(PRESETS["lite"], config, None, NearIdentity(), gate, why)
        return [anonymizer([image], detections=[s.detections])[0].image for image, s in zip(images, shared)]

    what = "with the identity gate" if mode == "on" else "without the identity gate: what it lets through"
    return Method(name, "probe", f"noise σ=4 on each person, a stand-in for diffusion at a tiny strength, {what}",
                  True, produce)


def baseline(name: str) -> Method:
    from refsd_trt.eval.baselines import BASELINES

    base = BASELINES[name]
    return Method(name, "baseline", base.description, True,
                  lambda images, shared: list(base.run(images, [s.masks for s in shared], [s.boxes for s in shared])))


def given(name: str, folder: Path, relatives: Sequence[Path]) -> Method:
    """Outputs already made by any tool, found in ``folder`` under each original's relative path
    (or with another image suffix: a PNG original may have been written as JPEG)."""

    def produce(images: Sequence[np.ndarray], shared: Sequence[Shared]) -> Produced:
        out: Produced = []
        for relative, image in zip(relatives, images):
            candidates = [folder / relative, *sorted((folder / relative).parent.glob(f"{relative.stem}.*"))]
            path = next((c for c in candidates if c.is_file()), None)
            if path is None:
                out.append(f"{folder / relative}: no anonymized version found")
                continue
            try:
                pixels = read_image(path).pixels.permute(1, 2, 0).numpy()
            except InputError as exc:
                out.append(str(exc))
                continue
            out.append(pixels if pixels.shape == image.shape else
                       f"{path}: size {pixels.shape[1]}x{pixels.shape[0]} differs from the original's "
                       f"{image.shape[1]}x{image.shape[0]}")
        return out

    return Method(name, "given", f"outputs read from {folder}", True, produce)


def available_presets() -> list[str]:
    """Every preset that can run here, the embedded default first; the real ones only when their
    weights are present."""
    from refsd_trt.presets import PRESETS, missing_requirements

    order = ("lite", "refsd", "inpaint", "tiny")
    return [name for name in order if not missing_requirements(PRESETS[name])]
