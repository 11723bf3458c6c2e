"""Run configuration: the one place every user-facing setting and its default is stated.

The effective configuration of a run is, lowest precedence first: RunConfig's defaults, the
preset's (``Preset.defaults``, only for the settings marked ``preset_setting``), a TOML/YAML file,
then command-line flags or API arguments. A preset setting left None means "not chosen"; ``resolved``
fills it once the preset is known, and that effective configuration is what builds the method and
what the manifest records for every input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomllib
import yaml

if TYPE_CHECKING:
    from refsd_trt.presets import Preset

METHODS = ("refsd", "inpaint", "lite")
BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
# auto: float16 on GPUs; on CPUs bf16 where the CPU has bf16 hardware and the component's measured
# accuracy allows it (refsd_trt.methods.precision_for), float32 elsewhere.
PRECISIONS = ("auto", "float32", "float16", "bfloat16")
_DEFAULT = "default"  # field metadata: the value a preset setting takes when neither user nor preset chose


def preset_setting(default: Any) -> Any:
    """A setting a preset may choose (``Preset.defaults``): None in a RunConfig means "not chosen";
    ``RunConfig.resolved`` fills it with the preset's value, else with ``default``."""
    return field(default=None, metadata={_DEFAULT: default})


def preset_settings() -> frozenset[str]:
    """The RunConfig fields a preset may give a default of its own."""
    return frozenset(f.name for f in dataclasses.fields(RunConfig) if _DEFAULT in f.metadata)


@dataclass
class RunConfig:
    preset: str | None = None  # None: the best preset whose weights are present
    method: str | None = None  # None: the preset's method
    # The person stage: inpaint's SDXL inpainting, refsd's SDXL img2img refinement of the avatar.
    strength: float = 0.6  # βd: diffusion noise strength of the person stage
    steps: int | None = preset_setting(30)  # denoising steps of the person stage
    guidance_scale: float | None = preset_setting(5.0)  # its classifier-free guidance (> 1 enables it)
    prompt: str | None = None  # a template over the attribute names; None: the default template
    negative_prompt: str | None = None  # None: none (zeros for SDXL checkpoints that want them)
    # refsd's removal: SD inpainting of every person's region from pure noise (strength 1).
    removal_steps: int | None = preset_setting(30)
    removal_guidance_scale: float | None = preset_setting(7.5)
    removal_prompt: str = "empty street background, high quality, realistic"
    removal_negative_prompt: str = "person, people, man, woman, child"  # "": none
    scheduler: str = "euler"  # euler | ddim | dpmpp, every diffusion stage
    attributes: dict[str, str] = field(default_factory=dict)  # fixed attributes for every person
    seed: int = 0
    device: str = "auto"  # auto: the first CUDA device if there is one, else cpu
    backend: str = "auto"
    # Host memory (GB, 10⁹ bytes) a CPU run's engines may fill: backend auto runs the fastest engine that
    # fits what is left of it. None: 60 % of this machine's (or container's) memory.
    memory_budget_gb: float | None = None
    precision: str = "auto"  # engine precision; float32 forces full precision everywhere
    batch_size: int = 4  # images (or video frames) read and detected together
    crop_batch_size: int = 4  # person crops per UNet call (twice as many rows with guidance)
    conf: float = 0.25  # detection confidence threshold
    dilate_px: int = 8  # image pixels people's masks grow by before removal, so no outline remains
    feather_px: int = 6  # image pixels of the soft edge every repainted region is pasted back with
    crop_scale: float = 1.1  # square crop side / the person's longer box side (Zwick et al.)
    stage_timeout_s: float | None = None  # a stage slower than this is treated as failed (fail closed)
    # After the method, each person's face is compared with the original's (refsd_trt.identity_gate) and
    # filled if still recognisable. auto: wherever the face models are installed; on: required; off.
    verify_identity: str = "auto"
    max_pixels: int = 64_000_000  # larger inputs are refused as decompression bombs
    # EXIF groups outputs keep (refsd_trt.io.metadata_policy): () strips everything; "time,gps" or a list.
    keep_metadata: tuple[str, ...] = ()
    # Videos (refsd_trt.tracking): a tracked person the detector misses for up to this many frames is
    # still removed there, at their predicted box (also before their first and after their last
    # detection); frames wait this many frames for the look-ahead. 0: no temporal guard.
    track_gap_frames: int = 10
    keep_audio: bool = False  # copy a video's audio track to its output (it can carry voices and names)

    def __post_init__(self) -> None:
        from refsd_trt.presets import PRESETS

        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if not 1 <= self.crop_batch_size <= 8:
            raise ValueError(f"crop_batch_size must be 1..8 (the engines' batch range with guidance), "
                             f"got {self.crop_batch_size}")
        for name in ("steps", "removal_steps", "batch_size", "max_pixels"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("guidance_scale", "removal_guidance_scale", "dilate_px", "feather_px", "track_gap_frames"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.crop_scale < 1.0:
            raise ValueError(f"crop_scale must be at least 1 (the crop holds the whole person), "
                             f"got {self.crop_scale}")
        if self.verify_identity not in ("auto", "on", "off"):
            raise ValueError(f"verify_identity must be auto, on or off, got {self.verify_identity!r}")
        if self.memory_budget_gb is not None and not self.memory_budget_gb > 0:
            raise ValueError(f"memory_budget_gb must be positive, got {self.memory_budget_gb}")
        if not 0.0 <= self.conf < 1.0:
            raise ValueError(f"conf must be in [0, 1), got {self.conf}")
        from refsd_trt.io.metadata_policy import MetadataPolicy

        try:  # canonical order, so "gps,time" and ["time", "gps"] are the same setting for --resume
            self.keep_metadata = MetadataPolicy.parse(self.keep_metadata).groups
        except ValueError as exc:
            raise ValueError(f"keep_metadata: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def merged(self, overrides: Mapping[str, Any]) -> RunConfig:
        """A copy with every override that is not None applied."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown configuration key(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def resolved(self, preset: Preset) -> RunConfig:
        """The effective configuration of a run of ``preset``: its name and method recorded, and every
        preset setting still None filled from ``preset.defaults``, else from RunConfig's default.
        Settings already chosen (by a file, flags or arguments) stay as they are."""
        filled = {f.name: preset.defaults.get(f.name, f.metadata[_DEFAULT]) for f in dataclasses.fields(self)
                  if _DEFAULT in f.metadata and getattr(self, f.name) is None}
        return dataclasses.replace(self, preset=preset.name, method=self.method or preset.method, **filled)


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
