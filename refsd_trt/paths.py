"""Where refsd-trt keeps what it builds (tiny zoo, ONNX exports, engines)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def cache_dir() -> Path:
    """``$REFSD_TRT_CACHE``, else ``$XDG_CACHE_HOME/refsd-trt``, else ``~/.cache/refsd-trt``."""
    if os.environ.get("REFSD_TRT_CACHE"):
        return Path(os.environ["REFSD_TRT_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "refsd-trt"


def package_file(package: str, relative: str = "") -> Path | None:
    """A file (with no ``relative``: the folder) inside an installed package, or None. Found
    without importing the package: several that ship weights import GPL/AGPL or heavy code."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
    elif spec is not None and spec.origin:
        folder = Path(spec.origin).parent
    else:
        return None
    path = folder / relative if relative else folder
    return path if path.exists() else None
