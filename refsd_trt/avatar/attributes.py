"""Reads the coarse person attributes (age group, gender) that avatars are sampled from.

Attributes are free-form strings from upstream (a classifier, a prompt, a user); unknown or missing
values fall back to the middle of the population rather than failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

AgeGroup = Literal["child", "teen", "adult", "senior"]
Gender = Literal["female", "male", "unknown"]


def age_group(attributes: Mapping[str, str]) -> AgeGroup:
    text = str(attributes.get("age", attributes.get("age_group", ""))).lower()
    if any(word in text for word in ("child", "kid", "baby", "toddler")):
        return "child"
    if "teen" in text:
        return "teen"
    if any(word in text for word in ("senior", "elder", "old")):
        return "senior"
    return "adult"


def gender(attributes: Mapping[str, str]) -> Gender:
    text = str(attributes.get("gender", "")).lower()
    # "female" contains "male" and "woman" contains "man": test the longer words first.
    if any(word in text for word in ("female", "woman", "girl")):
        return "female"
    if any(word in text for word in ("male", "man", "boy")):
        return "male"
    return "unknown"


def generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator per (seed, stream) so that shape and clothing draws never shift each other."""
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))
