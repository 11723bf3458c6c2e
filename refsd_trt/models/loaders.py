"""The one way model weights are found and loaded, for real checkpoints and the tiny zoo alike.

A model reference is a local folder or a Hugging Face id; ids resolve through the standard
Hugging Face cache with ``local_files_only`` — nothing is ever downloaded at run time. Diffusion
pipelines are read the way diffusers lays them out (``model_index.json`` naming each component's
library and class), so a tiny-zoo folder and a real SDXL snapshot take the same path.
"""

from __future__ import annotations

import importlib
import json
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelNotFound(FileNotFoundError):
    """A model reference that is neither a local folder/file nor in the local caches."""


def _hub_cache() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return HF_HUB_CACHE


def resolve_model_dir(ref: str | Path) -> Path:
    """A local folder as is; otherwise a Hugging Face id looked up in the local cache only."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelNotFound(f"{ref}: is a file, expected a model folder")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(ref), local_files_only=True))
    except Exception as exc:  # the hub raises several types for "not cached" and for bad ids
        raise ModelNotFound(
            f"{ref}: not a local folder and not in the Hugging Face cache ({_hub_cache()}); "
            f"fetch it where a network is allowed (huggingface-cli download {ref}) or pass a local folder"
        ) from exc


def resolve_reference(ref: str | Path) -> Path:
    """A model folder or weights file as given, else a Hugging Face id (``owner/name``) from the
    local cache; a path that is not there stays a path, for the caller to report."""
    path = Path(ref).expanduser()
    if path.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", str(ref)):
        return path
    return resolve_model_dir(ref)


def resolve_weights_file(ref: str | Path, search: tuple[Path, ...] = ()) -> Path:
    """A single-file checkpoint (e.g. ultralytics ``.pt``): a path, or a bare name found in ``search``."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    for folder in search:
        if (folder / path.name).is_file():
            return folder / path.name
    where = ", ".join(str(f) for f in search) or "the current folder"
    raise ModelNotFound(f"{ref}: no such weights file (looked in {where})")


def _component_class(library: str, class_name: str) -> Any:
    return getattr(importlib.import_module(library), class_name)


class IncompleteCheckpoint(ValueError):
    """A checkpoint that lacks weights its model needs: loading it would run random layers."""


# Weight files as diffusers and transformers name them: <stem>[.<variant>][-0000i-of-0000n].<ext>.
# Shard indexes (<stem>.<ext>.index[.<variant>].json) are read by from_pretrained and hashed with them.
_WEIGHTS = re.compile(r"^(?:diffusion_pytorch_model|model|pytorch_model)(?:\.(?P<variant>\w+?))?"
                      r"(?:-\d{5}-of-\d{5})?\.(?P<ext>safetensors|bin)$")
_INDEX = re.compile(r"^(?:diffusion_pytorch_model|model|pytorch_model)\.(?P<ext>safetensors|bin)"
                    r"\.index(?:\.(?P<variant>\w+))?\.json$")


@dataclass(frozen=True)
class WeightFiles:
    """What ``from_pretrained`` reads from one model folder: its config and one variant's weights."""

    folder: Path
    variant: str | None  # None: the default checkpoint; "fp16": diffusion_pytorch_model.fp16.safetensors...
    weights: tuple[Path, ...]  # safetensors when present (what from_pretrained prefers), else .bin

    @property
    def files(self) -> list[Path]:
        """The files whose bytes define the model: not the other variants, formats or single-file copies
        a real repository also holds (fp16, .bin, OpenVINO, sdxl_vae.safetensors), which hashing
        everything would read for nothing."""
        return [self.folder / "config.json", *self.weights]


def weight_files(folder: Path) -> WeightFiles:
    """The weights ``from_pretrained`` loads from ``folder``: the default checkpoint when present;
    otherwise the one variant the cache holds (``fp16`` first), which it must be told to load."""
    if not (folder / "config.json").is_file():
        raise ModelNotFound(f"{folder}: no config.json")
    found: dict[tuple[str | None, str], list[Path]] = {}
    for path in folder.iterdir():
        match = _WEIGHTS.match(path.name) or _INDEX.match(path.name)
        if match and path.is_file():
            found.setdefault((match["variant"], match["ext"]), []).append(path)
    if not found:
        raise ModelNotFound(f"{folder}: no weights (diffusion_pytorch_model/model .safetensors or .bin)")
    variant = min((v for v, _ in found), key=lambda v: (v is not None, v != "fp16", v or ""))
    ext = "safetensors" if (variant, "safetensors") in found else "bin"
    return WeightFiles(folder, variant, tuple(sorted(found[variant, ext])))


# Models loaded and still in use, by folder, class and dtype: a second load (the VAE encoder and
# decoder engines of one VAE; the same text encoder for two roles) shares the first one's weights,
# as long as nobody has moved or cast them in place (a torch engine's fp16 copy on a GPU).
_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


# Whether a model asked for in fp32 whose folder holds only the fp16 variant keeps its weights in
# fp16 as stored (a CPU torch engine computes with them in fp32, refsd_trt.engine.torch_backend):
# the same values in half the memory, without the fp32 copy that a cast at load time builds beside the
# mapped fp16 file (SDXL base's UNet: 10.3 GB, peaking at 16 GB while loading).
_KEEP_FP16: ContextVar[bool] = ContextVar("keep_fp16", default=False)


@contextmanager
def fp16_weights_kept(keep: bool = True) -> Iterator[None]:
    token = _KEEP_FP16.set(keep)
    try:
        yield
    finally:
        _KEEP_FP16.reset(token)


def keeps_fp16(model: Any) -> bool:
    """Whether ``model`` was loaded with its fp16 weights kept (``fp16_weights_kept``)."""
    import torch

    return _KEEP_FP16.get() and any(p.dtype == torch.float16 for p in model.parameters())


def _as_loaded(model: Any, dtype: Any) -> bool:
    return all(p.dtype == dtype and p.device.type == "cpu" for p in model.parameters())


def load_model(folder: Path, cls: Any, dtype: Any = None) -> Any:
    """A diffusers or transformers model from ``folder`` as ``from_pretrained`` loads it, told what its
    defaults get wrong for this project: the dtype (fp32 unless asked: transformers 5 otherwise takes
    the config's ``torch_dtype``, float16 in SDXL's text encoders over fp32 weights), the variant a
    variant-only cache holds, missing weights as an error rather than random layers, and diffusers'
    low-memory loading (accelerate) required rather than skipped with a warning."""
    import torch

    dtype = dtype or torch.float32
    files = weight_files(folder)
    if dtype == torch.float32 and files.variant == "fp16" and _KEEP_FP16.get():
        dtype = torch.float16  # as stored (fp16_weights_kept)
    key = (str(folder.resolve()), f"{cls.__module__}.{cls.__name__}", str(dtype))
    if (model := _LOADED.get(key)) is not None and _as_loaded(model, dtype):
        return model
    if cls.__module__.startswith("diffusers"):
        options = {"torch_dtype": dtype, "low_cpu_mem_usage": True}
        from diffusers.models import modeling_utils

        if not modeling_utils.is_accelerate_available():
            # diffusers would fall back, with a warning, to building the model and loading its weights
            # beside it, which older releases hold twice (0.42.1 maps the file either way: a full-size
            # SDXL UNet loads at the same peak RSS, README)
            raise ImportError(f"{folder}: loading diffusers models needs accelerate (pip install accelerate); "
                              "without it diffusers may hold a model twice while loading it")
    else:
        options = {"dtype": dtype}  # transformers 5 always loads weights into an empty model
    model, info = cls.from_pretrained(folder, variant=files.variant, output_loading_info=True, **options)
    missing = sorted(info["missing_keys"])
    if missing:
        raise IncompleteCheckpoint(f"{folder}: the checkpoint lacks {len(missing)} weight(s) the model needs "
                                   f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    _LOADED[key] = model
    return model


def diffusers_config(folder: Path) -> dict[str, Any]:
    """A diffusers model's config as ``from_pretrained`` builds it: the file's values over the class's
    defaults (an SD 1.5 VAE config of 2022 has no ``scaling_factor``; diffusers then uses 0.18215)."""
    import inspect

    import diffusers

    cfg = json.loads((folder / "config.json").read_text())
    params = inspect.signature(getattr(diffusers, cfg["_class_name"]).__init__).parameters.values()
    return {**{p.name: p.default for p in params if p.default is not inspect.Parameter.empty}, **cfg}


def pipeline_index(folder: Path) -> dict[str, tuple[str, str]]:
    """Components of a diffusers pipeline folder: name -> (library, class name)."""
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelNotFound(f"{folder}: no model_index.json, not a diffusers pipeline folder")
    index = json.loads(index_file.read_text())
    return {
        name: (value[0], value[1])
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and len(value) == 2 and value[0] is not None
    }


def component_folder(ref: str | Path, name: str) -> tuple[Path, str, str]:
    """``name``'s folder in a pipeline, with its library and class name from ``model_index.json``."""
    folder = resolve_model_dir(ref)
    index = pipeline_index(folder)
    if name not in index:
        raise ModelNotFound(f"{folder}: pipeline has no component {name!r} (has: {', '.join(index)})")
    return folder / name, *index[name]


def load_component(ref: str | Path, name: str, dtype: Any = None) -> Any:
    """One component (``unet``, ``vae``, ``text_encoder_2``, ``tokenizer``, ``scheduler``…) of a pipeline."""
    folder, library, class_name = component_folder(ref, name)
    cls = _component_class(library, class_name)
    if any(base.__name__ in ("ModelMixin", "PreTrainedModel") for base in cls.__mro__):
        return load_model(folder, cls, dtype)
    return cls.from_pretrained(folder)  # tokenizers, schedulers, processors: no weights


def load_pipeline_components(ref: str | Path, names: tuple[str, ...] | None = None, dtype: Any = None) -> dict[str, Any]:
    folder = resolve_model_dir(ref)
    return {name: load_component(folder, name, dtype) for name in names or tuple(pipeline_index(folder))}


def vae_folder(ref: str | Path) -> Path:
    """The folder of a VAE: a pipeline's ``vae/`` or a standalone VAE repository's root. A folder with
    ``model_index.json`` is a pipeline whatever else lies at its root (the SD 1.5 inpainting repository
    keeps a UNet ``config.json`` there)."""
    folder = resolve_model_dir(ref)
    if (folder / "model_index.json").is_file():
        return component_folder(folder, "vae")[0]
    if (folder / "config.json").is_file():
        return folder
    raise ModelNotFound(f"{folder}: neither a diffusers pipeline (model_index.json) nor a VAE (config.json)")


def load_vae(ref: str | Path, dtype: Any = None) -> Any:
    """A VAE from a pipeline folder's ``vae/`` or a standalone VAE repository (the fp16-safe SDXL VAE)."""
    from diffusers import AutoencoderKL

    return load_model(vae_folder(ref), AutoencoderKL, dtype)


def load_yolo(ref: str | Path, search: tuple[Path, ...] = ()) -> Any:
    """An ultralytics checkpoint as its torch model. Export time only: ultralytics is AGPL-3.0."""
    from refsd_trt.export.ultralytics_offline import yolo_class

    return yolo_class()(str(resolve_weights_file(ref, search)))
