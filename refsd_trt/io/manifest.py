"""The run's JSON-lines manifest: one line per input, durable line by line, readable after a crash.

Each ``append`` writes one complete line with a single ``write`` on an ``O_APPEND`` descriptor, then
fsyncs, so a crash loses at most the line being written. A torn line (a crash mid-write) or any
other line that is not a JSON object is skipped with a warning when reading. Before the first
append of a process, a torn last line is closed with a newline so the new record is not glued to it.

Required keys of every record: ``input`` (path), ``output`` (path or None), ``status`` (``ok``,
``failed`` or ``skipped``) and ``input_sha256`` (hex, or None when the input could not be read).
Anything else the caller adds (error line, people, method, prompts, seeds, fallbacks, timings) is
kept as given; dataclasses, paths, numpy values and tensors are converted to JSON. ``written_at``
(UTC, ISO 8601) is added when absent. Paths are compared as written, so record absolute paths to
resume from another working folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from refsd_trt.io.hashing import sha256_file

REQUIRED_KEYS = ("input", "output", "status", "input_sha256")
STATUSES = frozenset({"ok", "failed", "skipped"})


class ManifestWarning(UserWarning):
    """A manifest line that could not be read (typically the line a crash tore)."""


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


class Manifest:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tail_checked = False

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one record as one line; returns once the line is on disk."""
        missing = [key for key in REQUIRED_KEYS if key not in record]
        if missing:
            raise ValueError(f"manifest record lacks {', '.join(missing)}")
        if record["status"] not in STATUSES:
            raise ValueError(f"manifest status must be one of {sorted(STATUSES)}, got {record['status']!r}")
        line = json.dumps(
            {**record, "written_at": record.get("written_at") or datetime.now(timezone.utc).isoformat()},
            default=_to_json,
            ensure_ascii=False,
        )
        data = (self._separator() + line + "\n").encode("utf-8")
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            written = os.write(fd, data)
            while written < len(data):  # only on a signal or a full disk; a short line would be torn
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if created and os.name != "nt":
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the manifest's own directory entry must survive a crash too
            finally:
                os.close(directory)

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

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, in file order; unreadable lines are skipped with a ``ManifestWarning``."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        records: list[dict[str, Any]] = []
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if isinstance(record, dict) and all(key in record for key in REQUIRED_KEYS):
                records.append(record)
            else:
                warnings.warn(
                    f"{self.path}:{number}: unreadable manifest line skipped (torn by a crash?)",
                    ManifestWarning,
                    stacklevel=2,
                )
        return records

    def done_inputs(self, config: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Inputs ``--resume`` may skip, mapped to their record.

        An input is done when its latest record has status ``ok`` from a run that anonymizes (not
        the tiny preset's random models), its output file is still the one that run wrote (same
        sha256), the input's current sha256 equals the recorded one, and, when ``config`` is given,
        the run's effective configuration agrees with every setting ``config`` fixes (None: any).
        Anything else is redone.
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
