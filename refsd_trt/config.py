"""Run configuration: from a TOML/YAML file, overridden by command-line flags or API arguments.

The effective configuration (after merging) is what the manifest records for every input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib
import yaml

METHODS = ("refsd", "inpaint", "lite")
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


@dataclass
class RunConfig:
    preset: str | None = None  # None: the best preset whose weights are present
    method: str | None = None  # None: the preset's method
    strength: float = 0.6  # βd: diffusion noise strength of the inpaint / refine stages
    steps: int = 30
    guidance_scale: float = 5.0
    scheduler: str = "euler"  # euler | ddim | dpmpp
    prompt: str | None = None  # a template over the attribute names; None: the default template
    negative_prompt: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)  # fixed attributes for every person
    seed: int = 0
    device: str = "auto"  # auto: the first CUDA device if there is one, else cpu
    backend: str = "auto"
    batch_size: int = 4  # images (or video frames) read and detected together
    crop_batch_size: int = 4  # person crops per UNet call (twice as many rows with guidance)
    conf: float = 0.25  # detection confidence threshold
    dilate_px: int = 8  # people masks grow by this before removal, so no outline remains
    feather_px: int = 6
    stage_timeout_s: float | None = None  # a stage slower than this is treated as failed (fail closed)
    max_pixels: int = 64_000_000  # larger inputs are refused as decompression bombs

    def __post_init__(self) -> None:
        from refsd_trt.presets import PRESETS

        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if not 1 <= self.crop_batch_size <= 8:
            raise ValueError(f"crop_batch_size must be 1..8 (the engines' batch range with guidance), "
                             f"got {self.crop_batch_size}")
        for name in ("steps", "batch_size", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.conf < 1.0:
            raise ValueError(f"conf must be in [0, 1), got {self.conf}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def merged(self, overrides: Mapping[str, Any]) -> RunConfig:
        """A copy with every override that is not None applied."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown configuration key(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_config(path: str | Path) -> RunConfig:
    """A TOML (``.toml``) or YAML (``.yaml``/``.yml``) file whose keys are RunConfig's fields."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read configuration: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ValueError(f"{path}: configuration must be .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not valid {path.suffix[1:].upper()}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table of settings at the top level")
    try:
        return RunConfig().merged(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
