"""A labelled grid of images (before/after sheets for the demo, avatar sheets for review)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABEL_HEIGHT = 18


def _fit(image: np.ndarray, height: int) -> Image.Image:
    pil = Image.fromarray(image)
    width = max(1, round(pil.width * height / pil.height))
    return pil.resize((width, height), Image.Resampling.LANCZOS)


def contact_sheet(rows: Sequence[Sequence[tuple[str, np.ndarray]]], height: int = 256, gap: int = 6) -> Image.Image:
    """``rows`` of (label, HxWx3 uint8 RGB) cells; each cell is scaled to ``height`` pixels."""
    fitted = [[(label, _fit(img, height)) for label, img in row] for row in rows]
    width = max(sum(cell.width + gap for _, cell in row) + gap for row in fitted)
    total = gap + len(fitted) * (height + LABEL_HEIGHT + gap)
    sheet = Image.new("RGB", (width, total), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    y = gap
    for row in fitted:
        x = gap
        for label, cell in row:
            draw.text((x + 2, y + 3), label, fill=(235, 235, 235))
            sheet.paste(cell, (x, y + LABEL_HEIGHT))
            x += cell.width + gap
        y += height + LABEL_HEIGHT + gap
    return sheet


def save_contact_sheet(rows: Sequence[Sequence[tuple[str, np.ndarray]]], path: str | Path, height: int = 256) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    contact_sheet(rows, height).save(tmp, format="PNG")
    tmp.replace(path)
    return path
