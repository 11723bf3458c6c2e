"""Typed failures of the input/output layer, each printable as one line that names the file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (no traceback): how every failure is reported."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()


def with_causes(exc: BaseException) -> str:
    """``one_line`` of ``exc`` and of each exception it was raised from, ``; caused by `` between: a
    wrapper's message alone ("exporting unet failed") does not say what to fix."""
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(one_line(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "; caused by ".join(parts)


class InputErrorKind(str, Enum):
    """Why an input was refused; the manifest and the CLI summary group failures by this."""

    MISSING = "missing"
    PERMISSION = "permission"
    NOT_A_FILE = "not-a-file"
    EMPTY = "empty"
    NOT_AN_IMAGE = "not-an-image"
    NOT_A_VIDEO = "not-a-video"
    CORRUPT = "corrupt"  # truncated or undecodable data
    DECOMPRESSION_BOMB = "decompression-bomb"
    TOO_LARGE = "too-large"
    ANIMATED = "animated"
    UNSUPPORTED = "unsupported"  # a pixel format or file type with no safe conversion


class InputError(Exception):
    """An input that cannot be processed. ``str(err)`` is ``"<path>: <reason>"`` on one line."""

    def __init__(self, path: str | Path, kind: InputErrorKind, reason: str) -> None:
        self.path = Path(path)
        self.kind = kind
        # One line whatever the underlying library said: CLI summaries and manifest lines rely on it.
        self.reason = " ".join(reason.split())
        super().__init__(f"{self.path}: {self.reason}")


class OutputError(Exception):
    """An output that cannot be written. ``str(err)`` is ``"<path>: <reason>"`` on one line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(reason.split())
        super().__init__(f"{self.path}: {self.reason}")
