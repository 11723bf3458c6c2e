"""Write-then-rename outputs: a reader never sees a partial file at an output's final path.

The bytes go to a hidden temporary file in the final directory (same file system, so the rename is
atomic), are fsync'd, then ``os.replace`` puts the file in place and the directory is fsync'd so the
rename itself survives a power cut. On an exception the temporary file is removed. A process killed
outright (SIGKILL, power loss) can leave a temporary file behind: it is named
``.<name>.tmp-<pid>-<random><suffix>``, hidden, never picked up by input discovery, and removed by
``clean_stale_temps`` once the process that made it is gone.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from types import TracebackType

# The final suffix is repeated at the end because some writers (OpenCV) pick the container from it.
_TEMP_NAME = re.compile(r"^\..+\.tmp-(?P<pid>\d+)-[0-9a-f]{12}(\.[A-Za-z0-9]+)?$")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    if os.name == "nt":
        # Windows cannot open a directory to fsync it: the rename has happened, only its
        # durability across a power cut is weaker there.
        return
    _fsync_path(directory)


class AtomicOutput:
    """Reserve a temporary path next to ``final``; ``commit`` moves it into place, ``discard`` drops it.

    As a context manager it commits when the block ends normally and discards on an exception::

        with AtomicOutput(out) as tmp:
            image.save(tmp, format="PNG")
    """

    def __init__(self, final: str | Path) -> None:
        self.final = Path(final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(6)
        self.temp = self.final.with_name(f".{self.final.name}.tmp-{os.getpid()}-{token}{self.final.suffix}")
        # O_EXCL reserves the name; mode 0o666 lets the umask decide the final file's permissions
        # (mkstemp would leave every output readable by its owner only).
        os.close(os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        self._open = True

    def commit(self) -> Path:
        if not self._open:
            raise RuntimeError(f"{self.final}: atomic output already committed or discarded")
        try:
            _fsync_path(self.temp)
            os.replace(self.temp, self.final)
        except BaseException:
            self.discard()
            raise
        self._open = False
        _fsync_directory(self.final.parent)
        return self.final

    def discard(self) -> None:
        self._open = False
        self.temp.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.temp

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def is_temp_name(name: str) -> bool:
    """True for names made by ``AtomicOutput`` (input discovery skips them)."""
    return _TEMP_NAME.match(name) is not None


def _process_alive(pid: int) -> bool:
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process on Windows: never clean there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def clean_stale_temps(root: str | Path) -> list[Path]:
    """Remove temporary files under ``root`` (recursively) left by writers that no longer run.

    Temporaries of a live process, this one included, are kept: another run may be writing them.
    Returns the removed paths.
    """
    removed: list[Path] = []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            match = _TEMP_NAME.match(name)
            if match and not _process_alive(int(match["pid"])):
                path = Path(directory) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
