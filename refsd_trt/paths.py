"""Where refsd-trt keeps what it builds (tiny zoo, ONNX exports, engines)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$REFSD_TRT_CACHE``, else ``$XDG_CACHE_HOME/refsd-trt``, else ``~/.cache/refsd-trt``."""
    if os.environ.get("REFSD_TRT_CACHE"):
        return Path(os.environ["REFSD_TRT_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "refsd-trt"
