"""Per-person attribute prompts and seeds.

Each replaced person gets attributes (age group, gender, clothing) — given by the user or sampled —
that drive both the avatar's body and colours and the diffusion prompt. Sampling is seeded per
person from (run seed, image content hash, person index), so a run is reproducible whatever the
batch composition or input order, and the manifest records the seed and the resulting prompt.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

CHOICES: dict[str, tuple[str, ...]] = {
    "age": ("young adult", "adult", "middle-aged", "elderly"),
    "gender": ("man", "woman"),
    "top": ("t-shirt", "shirt", "jacket", "coat", "sweater"),
    "bottom": ("jeans", "pants", "shorts", "skirt"),
    "top_color": ("red", "blue", "green", "black", "white", "gray", "yellow", "brown"),
    "bottom_color": ("blue", "black", "gray", "brown", "white"),
}

DEFAULT_TEMPLATE = (
    "a photo of a {age} {gender} wearing a {top_color} {top} and {bottom_color} {bottom}, "
    "realistic, high quality"
)
NEGATIVE_PROMPT = "deformed, distorted, blurry, cartoon, text, watermark"


@dataclass(frozen=True)
class PersonPrompt:
    attributes: dict[str, str]
    prompt: str
    seed: int


def person_seed(run_seed: int, image_key: str, index: int | str) -> int:
    """A 31-bit seed stable across runs, batches and input order. ``index``: the person's index in
    the image, or another key of theirs (a video's track, ``"track-3"``)."""
    digest = hashlib.sha256(f"{run_seed}:{image_key}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def sample_attributes(seed: int, given: Mapping[str, str] | None = None) -> dict[str, str]:
    """Attributes for one person: the user's where given, the rest drawn from ``CHOICES``."""
    unknown = set(given or {}) - set(CHOICES)
    if unknown:
        raise ValueError(f"unknown attribute(s) {sorted(unknown)}; known: {', '.join(CHOICES)}")
    rng = random.Random(seed)
    drawn = {name: rng.choice(options) for name, options in CHOICES.items()}  # always draw all: stable stream
    return {**drawn, **(given or {})}


def person_prompt(run_seed: int, image_key: str, index: int | str, given: Mapping[str, str] | None = None,
                  template: str = DEFAULT_TEMPLATE) -> PersonPrompt:
    seed = person_seed(run_seed, image_key, index)
    attributes = sample_attributes(seed, given)
    try:
        prompt = template.format(**attributes)
    except KeyError as missing:
        raise ValueError(f"prompt template names {missing}, which is not an attribute ({', '.join(CHOICES)})") from None
    return PersonPrompt(attributes, with_articles(prompt, attributes.values()), seed)


def with_articles(text: str, words) -> str:
    """"a" before a filled-in word that starts with a vowel becomes "an" ("an elderly man"); the
    template's own words are left as written."""
    for word in {w for w in words if w[:1].lower() in "aeiou"}:
        text = re.sub(rf"\b([Aa]) (?={re.escape(word)}\b)", r"\1n ", text)
    return text


def parse_attributes(text: str) -> dict[str, str]:
    """``"age=elderly,gender=woman"`` -> ``{"age": "elderly", "gender": "woman"}``."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise ValueError(f"attributes must look like key=value,key=value; got {text!r}")
    parsed = {k.strip(): v.strip() for k, v in pairs}
    sample_attributes(0, parsed)  # validates the names
    return parsed
