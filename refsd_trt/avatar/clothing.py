"""Neutral clothing colours per avatar, drawn from attributes and a seed, painted per body region.

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


def clothing_palette(attributes: Mapping[str, str], seed: int) -> torch.Tensor:
    """(len(BodyRegion), 3) albedo per region; children get brighter tops."""
    gen = generator(seed, stream=1)
    pick = lambda options: options[int(torch.randint(len(options), (), generator=gen))]
    tops = _TOPS + _BRIGHT_TOPS if age_group(attributes) == "child" else _TOPS
    top = pick(tops)
    long_sleeves = bool(torch.rand((), generator=gen) < 0.5)
    palette = {
        BodyRegion.HEAD: MANNEQUIN,
        BodyRegion.HANDS: MANNEQUIN,
        BodyRegion.TOP: top,
        BodyRegion.FOREARMS: top if long_sleeves else MANNEQUIN,
        BodyRegion.BOTTOM: pick(_BOTTOMS),
        BodyRegion.FEET: pick(_SHOES),
    }
    return torch.tensor([palette[region] for region in BodyRegion])


def vertex_colors(vertex_regions: torch.Tensor, palettes: torch.Tensor) -> torch.Tensor:
    """(V,) regions and (N, R, 3) palettes -> (N, V, 3) per-vertex albedo."""
    return palettes.to(vertex_regions.device)[:, vertex_regions]
