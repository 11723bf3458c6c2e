"""The one way model weights are found and loaded, for real checkpoints and the tiny zoo alike.

A model reference is a local folder or a Hugging Face id; ids resolve through the standard
Hugging Face cache with ``local_files_only`` — nothing is ever downloaded at run time. Diffusion
pipelines are read the way diffusers lays them out (``model_index.json`` naming each component's
library and class), so a tiny-zoo folder and a real SDXL snapshot take the same path.
"""

from __future__ import annotations

import importlib
import json
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


def load_component(ref: str | Path, name: str, **kwargs: Any) -> Any:
    """One component (``unet``, ``vae``, ``text_encoder_2``, ``tokenizer``, ``scheduler``…) of a pipeline."""
    folder = resolve_model_dir(ref)
    index = pipeline_index(folder)
    if name not in index:
        raise ModelNotFound(f"{folder}: pipeline has no component {name!r} (has: {', '.join(index)})")
    library, class_name = index[name]
    return _component_class(library, class_name).from_pretrained(folder / name, **kwargs)


def load_pipeline_components(ref: str | Path, names: tuple[str, ...] | None = None, **kwargs: Any) -> dict[str, Any]:
    folder = resolve_model_dir(ref)
    return {name: load_component(folder, name, **kwargs) for name in names or tuple(pipeline_index(folder))}


def load_vae(ref: str | Path, **kwargs: Any) -> Any:
    """A VAE from a pipeline folder's ``vae/`` or a standalone VAE repository (the fp16-safe SDXL VAE)."""
    from diffusers import AutoencoderKL

    folder = resolve_model_dir(ref)
    if (folder / "config.json").is_file():
        return AutoencoderKL.from_pretrained(folder, **kwargs)
    return load_component(folder, "vae", **kwargs)


def load_yolo(ref: str | Path, search: tuple[Path, ...] = ()) -> Any:
    """An ultralytics checkpoint as its torch model. Export time only: ultralytics is AGPL-3.0."""
    from refsd_trt.export.ultralytics_offline import yolo_class

    return yolo_class()(str(resolve_weights_file(ref, search)))
