"""A cached folder built once per content key, atomically: the tiny zoo's entries, the real-layout zoo.

The folder is built in a staging folder beside it and renamed into place with a ``.complete``
marker, so a killed build never passes for a finished one and two processes building the same key
at once both end with the one folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MARKER = ".complete"


def content_key(payload: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of ``payload`` as canonical JSON."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_once(folder: Path, build: Callable[[Path], None], marker: Mapping[str, Any]) -> Path:
    """``folder``, after ``build(staging)`` has filled it, unless a finished one is already there."""
    if (folder / MARKER).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        build(staging)
        (staging / MARKER).write_text(json.dumps(dict(marker)))
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished the same folder first
            if not (folder / MARKER).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
