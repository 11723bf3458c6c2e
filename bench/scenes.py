"""Benchmark inputs with a known number of people: the packaged sample photos, and synthetic scenes
that paste N people cut out of those photos onto a background.

Every scene carries its people as ``PersonDetections`` (the "oracle"): boxes hand-measured on the
sample photos and an ellipse mask inside each box. The tiny preset's random YOLO finds nobody, so
these are what both refsd-trt and the baseline process there; everything here is deterministic
(fixed boxes, seeded placement), so two runs time the same work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from refsd_trt.samples import SAMPLE_PEOPLE, sample_image_paths
from refsd_trt.types import PersonDetections


@dataclass(frozen=True)
class Cutout:
    """One person from a sample photo: the box's pixels and the ellipse mask inside it."""

    pixels: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool


@dataclass
class Scene:
    key: str  # stable name; it also seeds the per-person prompts on both sides
    image: np.ndarray  # (H, W, 3) uint8 RGB
    people: PersonDetections  # the oracle: what is in the image, in pasting order
    synthetic: bool

    @property
    def count(self) -> int:
        return len(self.people)


def ellipse_mask(height: int, width: int) -> np.ndarray:
    """The ellipse inscribed in a height × width box: a person-shaped blob that touches all sides."""
    y = (np.arange(height) + 0.5) / height * 2 - 1
    x = (np.arange(width) + 0.5) / width * 2 - 1
    return y[:, None] ** 2 + x[None, :] ** 2 <= 1.0


def _detections(boxes: list[tuple[int, int, int, int]], masks: list[np.ndarray], height: int,
                width: int) -> PersonDetections:
    if not boxes:
        return PersonDetections.empty(height, width)
    return PersonDetections(
        boxes=torch.tensor(boxes, dtype=torch.float32),
        scores=torch.ones(len(boxes)),
        masks=torch.from_numpy(np.stack(masks)),
    )


def _place_mask(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = ellipse_mask(y1 - y0, x1 - x0)
    return mask


@lru_cache(maxsize=1)
def _sample_photos() -> tuple[tuple[str, np.ndarray], ...]:
    """(stem, pixels) of the sample photos whose people are known."""
    photos = [(p.stem, np.asarray(Image.open(p).convert("RGB"))) for p in sample_image_paths()]
    found = tuple((stem, px) for stem, px in photos if stem in SAMPLE_PEOPLE)
    if not found:
        raise RuntimeError("no sample photos found: install ultralytics or scikit-image (they ship them)")
    return found


def sample_scenes() -> list[Scene]:
    """The real photos themselves, with their hand-measured people."""
    scenes = []
    for stem, pixels in _sample_photos():
        height, width = pixels.shape[:2]
        boxes = list(SAMPLE_PEOPLE[stem])
        masks = [_place_mask(height, width, b) for b in boxes]
        scenes.append(Scene(f"sample-{stem}", pixels, _detections(boxes, masks, height, width), synthetic=False))
    return scenes


def cutouts() -> list[Cutout]:
    return [Cutout(px[y0:y1, x0:x1], ellipse_mask(y1 - y0, x1 - x0))
            for stem, px in _sample_photos() for x0, y0, x1, y1 in SAMPLE_PEOPLE[stem]]


def background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth two-colour gradient with mild noise: texture for the VAE, no people in it."""
    top, bottom = rng.integers(40, 216, size=(2, 3))
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (1 - t) * top + t * bottom + rng.normal(0.0, 6.0, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _resize(cutout: Cutout, height: int, width: int) -> Cutout:
    pixels = np.asarray(Image.fromarray(cutout.pixels).resize((width, height), Image.BILINEAR))
    return Cutout(pixels, ellipse_mask(height, width))


def synthetic_scene(index: int, people: int, size: tuple[int, int] = (512, 512), seed: int = 0) -> Scene:
    """``people`` cut-outs on a background, one per cell of a near-square grid so none overlap.
    Each person is scaled to 70–95 % of the cell height (seeded), keeping its aspect ratio, and
    placed at a seeded position inside its cell. Scene ``index`` varies the draw."""
    height, width = size
    rng = np.random.default_rng([seed, index, people, height, width])
    image = background(height, width, rng)
    pool = cutouts()
    cols = math.ceil(math.sqrt(people)) if people else 1
    rows = math.ceil(people / cols) if people else 1
    cell_h, cell_w = height // rows, width // cols
    boxes, masks = [], []
    for k in range(people):
        source = pool[int(rng.integers(len(pool)))]
        aspect = source.pixels.shape[1] / source.pixels.shape[0]
        h = max(8, int(cell_h * rng.uniform(0.70, 0.95)))
        w = max(4, min(cell_w, int(h * aspect)))
        h = min(h, max(8, int(w / aspect)))  # wide people shrink to fit the cell's width
        person = _resize(source, h, w)
        row, col = divmod(k, cols)
        y0 = row * cell_h + int(rng.integers(0, cell_h - h + 1))
        x0 = col * cell_w + int(rng.integers(0, cell_w - w + 1))
        region = image[y0:y0 + h, x0:x0 + w]
        region[person.mask] = person.pixels[person.mask]
        box = (x0, y0, x0 + w, y0 + h)
        boxes.append(box)
        masks.append(_place_mask(height, width, box))
    return Scene(f"synthetic-{people}p-{height}x{width}-{index}", image, _detections(boxes, masks, height, width),
                 synthetic=True)


def synthetic_scenes(images: int, people: int, size: tuple[int, int] = (512, 512), seed: int = 0) -> list[Scene]:
    return [synthetic_scene(i, people, size, seed) for i in range(images)]
