"""The run's two JSON-lines logs: the published manifest and the private resume state.

``Manifest`` (``OUT/manifest.jsonl``) is meant to travel with the outputs. It names every input by
its relative name (the path its output mirrors, e.g. ``nested/street.png``) and every output
relative to the output folder, and it carries no input hash: nothing in it leads back to where the
originals live or which files they were. ``append`` refuses an absolute ``input``, ``output`` or
``intended_output`` and an ``input_sha256`` key, so a caller cannot leak them by mistake.

``ResumeState`` (by default ``OUT/.refsd-trt/state.jsonl``: a hidden folder, mode 0700, that input
discovery never enters; the file is mode 0600) is what ``--resume`` reads: each input's absolute
path and sha256, the output's absolute path and sha256, the effective configuration and whether
the run anonymizes. It is private: never publish it. ``--publish`` writes none.

Both are durable line by line. Each ``append`` writes one complete line with a single ``write`` on
an ``O_APPEND`` descriptor, then fsyncs (and fsyncs the folder when the file is new), so a crash
loses at most the line being written. A torn line (a crash mid-write) or any other line that is not
a JSON object with the required keys is skipped with a warning when reading. Before the first
append of a process, a torn last line is closed with a newline so the new record is not glued to it.

Required keys: ``input``, ``output`` (or None) and ``status`` (``ok``, ``failed`` or ``skipped``);
the resume state also requires ``input_sha256`` (hex, or None when the input could not be read).
Anything else the caller adds (error line, people, method, prompts, seeds, fallbacks, timings) is
kept as given; dataclasses, paths, numpy values and tensors are converted to JSON. ``written_at``
(UTC, ISO 8601) is added when absent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path, PureWindowsPath
from typing import Any, ClassVar

from refsd_trt.io.hashing import sha256_file

REQUIRED_KEYS = ("input", "output", "status")
STATE_REQUIRED_KEYS = (*REQUIRED_KEYS, "input_sha256")
STATUSES = frozenset({"ok", "failed", "skipped"})
PATH_KEYS = ("input", "output", "intended_output")  # named relatively in the published manifest
PRIVATE_KEYS = ("input_sha256",)  # never in the published manifest
STATE_FOLDER = ".refsd-trt"  # hidden: input discovery does not enter it
STATE_NAME = "state.jsonl"


class ManifestWarning(UserWarning):
    """A manifest line that could not be read (typically the line a crash tore)."""


def default_state_path(out_dir: str | Path) -> Path:
    """Where the resume state lives when no other place is given: ``OUT/.refsd-trt/state.jsonl``."""
    return Path(out_dir) / STATE_FOLDER / STATE_NAME


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    raise TypeError(f"manifest value of type {type(value).__name__} is not JSON-serializable")


def _fsync_folder(folder: Path) -> None:
    if os.name == "nt":
        return  # Windows cannot open a folder to fsync it
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _JsonLines:
    """A durable, crash-tolerant JSON-lines file of records with ``required`` keys."""

    required: ClassVar[tuple[str, ...]] = REQUIRED_KEYS
    file_mode: ClassVar[int] = 0o666  # the umask decides

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tail_checked = False

    def _check(self, record: Mapping[str, Any]) -> None:
        missing = [key for key in self.required if key not in record]
        if missing:
            raise ValueError(f"manifest record lacks {', '.join(missing)}")
        if record["status"] not in STATUSES:
            raise ValueError(f"manifest status must be one of {sorted(STATUSES)}, got {record['status']!r}")

    def _prepare_folder(self) -> None:
        """Make sure the file's folder exists before the first line is written."""

    def _opened(self, fd: int) -> None:
        """Called with the descriptor of every append (the private state tightens its mode here)."""

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one record as one line; returns once the line is on disk."""
        self._check(record)
        line = json.dumps(
            {**record, "written_at": record.get("written_at") or datetime.now(timezone.utc).isoformat()},
            default=_to_json,
            ensure_ascii=False,
        )
        data = (self._separator() + line + "\n").encode("utf-8")
        self._prepare_folder()
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.file_mode)
        try:
            self._opened(fd)
            written = os.write(fd, data)
            while written < len(data):  # only on a signal or a full disk; a short line would be torn
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_folder(self.path.parent)  # the file's own directory entry must survive a crash too

    def extend(self, records: list[Mapping[str, Any]]) -> None:
        """Add many records (each checked as ``append`` does) with one write and one fsync: the
        distributed run's merge of its shards. A crash mid-write tears at most the last line."""
        if not records:
            return
        for record in records:
            self._check(record)
        lines = [json.dumps({**r, "written_at": r.get("written_at") or datetime.now(timezone.utc).isoformat()},
                            default=_to_json, ensure_ascii=False) for r in records]
        data = (self._separator() + "\n".join(lines) + "\n").encode("utf-8")
        self._prepare_folder()
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.file_mode)
        try:
            self._opened(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_folder(self.path.parent)

    def _separator(self) -> str:
        """A newline if a previous run's crash left the file ending mid-line (checked once)."""
        if self._tail_checked:
            return ""
        self._tail_checked = True
        try:
            with open(self.path, "rb") as stream:
                stream.seek(0, os.SEEK_END)
                if stream.tell() == 0:
                    return ""
                stream.seek(-1, os.SEEK_END)
                return "" if stream.read(1) == b"\n" else "\n"
        except FileNotFoundError:
            return ""

    def _parsed(self) -> list[tuple[int, dict[str, Any] | None]]:
        """(line number, record or None when unreadable) for every non-blank line."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        parsed: list[tuple[int, dict[str, Any] | None]] = []
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            ok = isinstance(record, dict) and all(key in record for key in self.required)
            parsed.append((number, record if ok else None))
        return parsed

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, in file order; unreadable lines are skipped with a ``ManifestWarning``."""
        records: list[dict[str, Any]] = []
        for number, record in self._parsed():
            if record is not None:
                records.append(record)
            else:
                warnings.warn(
                    f"{self.path}:{number}: unreadable manifest line skipped (torn by a crash?)",
                    ManifestWarning,
                    stacklevel=2,
                )
        return records


def _is_absolute(value: Any) -> bool:
    if not isinstance(value, (str, os.PathLike)):
        return False
    text = os.fspath(value)
    return os.path.isabs(text) or PureWindowsPath(text).is_absolute()


class Manifest(_JsonLines):
    """The published manifest: relative names, no input hashes (see the module's docstring)."""

    def _check(self, record: Mapping[str, Any]) -> None:
        super()._check(record)
        leaked = [key for key in PRIVATE_KEYS if key in record]
        leaked += [key for key in PATH_KEYS if record.get(key) is not None and _is_absolute(record[key])]
        if leaked:
            raise ValueError(
                f"published manifest records name files relatively and carry no input hash; "
                f"got {', '.join(leaked)} (that belongs in the private resume state)"
            )

    def private_lines(self) -> int:
        """How many lines name an absolute path or an input hash (written by versions before the
        split into a published manifest and a private state): they must not be published."""
        return sum(
            1
            for _number, record in self._parsed()
            if record is not None
            and (any(k in record for k in PRIVATE_KEYS) or any(_is_absolute(record.get(k)) for k in PATH_KEYS))
        )


class ResumeState(_JsonLines):
    """The private resume state: absolute paths, hashes and configurations (see the module's docstring).

    The file is created with mode 0600 (and tightened to it if it is wider); a missing folder is
    created with mode 0700. ``own_folder``: the folder is this state's alone (the default hidden
    folder inside the output), so it is kept at mode 0700 even when it already exists.
    """

    required = STATE_REQUIRED_KEYS
    file_mode = 0o600

    def __init__(self, path: str | Path, own_folder: bool = False) -> None:
        super().__init__(path)
        self.own_folder = own_folder
        self._folder_ready = False

    def _prepare_folder(self) -> None:
        if self._folder_ready:
            return
        folder = self.path.parent
        created = not folder.exists()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (created or self.own_folder) and os.name != "nt":
            os.chmod(folder, 0o700)  # whatever the umask did
        if created:
            _fsync_folder(folder.parent)
        self._folder_ready = True

    def _opened(self, fd: int) -> None:
        if hasattr(os, "fchmod") and os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)

    def done_inputs(self, config: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Inputs ``--resume`` may skip, mapped to their record.

        An input is done when its latest record has status ``ok`` from a run that anonymizes (not
        the tiny preset's random models), its output file is still the one that run wrote (same
        sha256), the input's current sha256 equals the recorded one, and, when ``config`` is given,
        the run's effective configuration agrees with every setting ``config`` fixes (None: any).
        Anything else is redone. Inputs are keyed by the path as recorded (absolute).
        """
        wanted = {k: v for k, v in json.loads(json.dumps(dict(config or {}), default=str)).items()
                  if v is not None}
        latest: dict[str, dict[str, Any]] = {}
        for record in self.records():
            latest[record["input"]] = record
        done: dict[str, dict[str, Any]] = {}
        for input_path, record in latest.items():
            if record["status"] != "ok" or record.get("anonymized") is not True or not record["output"]:
                continue
            recorded = record.get("config") or {}
            if any(recorded.get(key) != value for key, value in wanted.items()):
                continue
            try:
                unchanged = sha256_file(input_path) == record["input_sha256"]
                untouched = sha256_file(record["output"]) == record.get("output_sha256")
            except OSError:
                continue
            if unchanged and untouched:
                done[input_path] = record
        return done
