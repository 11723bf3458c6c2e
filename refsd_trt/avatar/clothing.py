"""Clothing colours per avatar, painted per body region: the colours and garments the person's
prompt names (so the render and the SDXL refinement it guides agree), the rest drawn from a seed.

Skin uses one fixed mannequin tone for everyone: a skin colour would be an identity cue to copy.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from refsd_trt.avatar.attributes import age_group, generator
from refsd_trt.avatar.body_model import BodyRegion

MANNEQUIN = (0.80, 0.72, 0.64)
_TOPS = ((0.85, 0.85, 0.82), (0.25, 0.30, 0.42), (0.45, 0.50, 0.45), (0.62, 0.20, 0.20),
         (0.30, 0.30, 0.32), (0.70, 0.62, 0.45), (0.35, 0.48, 0.65))
_BRIGHT_TOPS = ((0.90, 0.55, 0.15), (0.25, 0.60, 0.85), (0.85, 0.35, 0.55), (0.40, 0.70, 0.35))
_BOTTOMS = ((0.18, 0.22, 0.35), (0.25, 0.25, 0.27), (0.45, 0.40, 0.32), (0.55, 0.55, 0.55), (0.30, 0.24, 0.20))
_SHOES = ((0.12, 0.12, 0.12), (0.35, 0.25, 0.18), (0.85, 0.85, 0.85))


# Albedo for the colour words of ``refsd_trt.attributes.CHOICES`` (muted: fabric, not paint).
NAMED_COLOURS = {
    "red": (0.62, 0.16, 0.16), "blue": (0.20, 0.30, 0.58), "green": (0.24, 0.46, 0.26),
    "black": (0.10, 0.10, 0.11), "white": (0.88, 0.88, 0.86), "gray": (0.50, 0.50, 0.50),
    "grey": (0.50, 0.50, 0.50), "yellow": (0.86, 0.74, 0.22), "brown": (0.40, 0.28, 0.18),
}
# Garments whose sleeves cover the forearms; others leave them bare, unknown ones are drawn.
LONG_SLEEVES = {"shirt": True, "jacket": True, "coat": True, "sweater": True, "t-shirt": False}


def clothing_palette(attributes: Mapping[str, str], seed: int) -> torch.Tensor:
    """(len(BodyRegion), 3) albedo per region. ``top_color``, ``bottom_color`` and ``top`` (sleeve
    length) come from the attributes where they name a known colour or garment; otherwise they are
    drawn from ``seed`` (children get brighter tops). The draws happen either way, so giving one
    attribute never changes the others."""
    gen = generator(seed, stream=1)
    pick = lambda options: options[int(torch.randint(len(options), (), generator=gen))]
    tops = _TOPS + _BRIGHT_TOPS if age_group(attributes) == "child" else _TOPS
    top, sleeves, bottom, shoes = pick(tops), bool(torch.rand((), generator=gen) < 0.5), pick(_BOTTOMS), pick(_SHOES)
    named = lambda key: NAMED_COLOURS.get(str(attributes.get(key, "")).lower())
    top = named("top_color") or top
    sleeves = LONG_SLEEVES.get(str(attributes.get("top", "")).lower(), sleeves)
    palette = {
        BodyRegion.HEAD: MANNEQUIN,
        BodyRegion.HANDS: MANNEQUIN,
        BodyRegion.TOP: top,
        BodyRegion.FOREARMS: top if sleeves else MANNEQUIN,
        BodyRegion.BOTTOM: named("bottom_color") or bottom,
        BodyRegion.FEET: shoes,
    }
    return torch.tensor([palette[region] for region in BodyRegion])


def vertex_colors(vertex_regions: torch.Tensor, palettes: torch.Tensor) -> torch.Tensor:
    """(V,) regions and (N, R, 3) palettes -> (N, V, 3) per-vertex albedo."""
    return palettes.to(vertex_regions.device)[:, vertex_regions]
