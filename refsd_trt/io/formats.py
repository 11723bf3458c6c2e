"""Which file suffixes are images and which are videos, and how each image suffix is encoded."""

from __future__ import annotations

from enum import Enum
from pathlib import Path


class MediaKind(str, Enum):
    IMAGE = "image"
    VIDEO = "video"


# Suffix (lower case) -> Pillow format name used to encode an output with that suffix.
IMAGE_FORMATS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm"})
# Videos are re-encoded with OpenCV's "mp4v" writer, the one codec opencv-python-headless can
# write everywhere; every video output is therefore an .mp4 whatever the input container was.
VIDEO_OUTPUT_SUFFIX = ".mp4"


def media_kind(path: str | Path) -> MediaKind | None:
    """The kind a path's suffix says it is (case-insensitive), or None for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_FORMATS:
        return MediaKind.IMAGE
    if suffix in VIDEO_SUFFIXES:
        return MediaKind.VIDEO
    return None
