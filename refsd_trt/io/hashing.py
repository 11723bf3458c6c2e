"""Content hashes of inputs: the manifest records them so that ``--resume`` redoes changed inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


def sha256_stream(stream: BinaryIO) -> str:
    """Hex sha256 of everything from the stream's current position to its end."""
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as stream:
        return sha256_stream(stream)
