"""Open an input file read-only, with one clear line for each way that can fail."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from refsd_trt.io.errors import InputError, InputErrorKind


def open_input(path: Path) -> BinaryIO:
    """Open an input read-only, or raise ``InputError`` saying why it cannot be read."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, InputErrorKind.MISSING, "file not found") from None
    except PermissionError:
        raise InputError(path, InputErrorKind.PERMISSION, "permission denied") from None
    if not stat.S_ISREG(info.st_mode):
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise InputError(path, InputErrorKind.NOT_A_FILE, f"is {what}")
    if info.st_size == 0:
        raise InputError(path, InputErrorKind.EMPTY, "empty file (0 bytes)")
    try:
        return open(path, "rb")
    except PermissionError:
        raise InputError(path, InputErrorKind.PERMISSION, "permission denied") from None
