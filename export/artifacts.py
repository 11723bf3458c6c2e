"""Content-keyed artifact folders: one model file (or several), its manifest, written atomically.

An artifact lives in ``<root>/<name>-<key>/`` where the key hashes everything that decides its
bytes (source weights, spec, opset, precision, tool versions). The manifest beside the files
records each file's sha256; ``lookup`` checks them, so a truncated or rewritten artifact is
reported and rebuilt, never handed to a runtime. A file's hash is remembered per (path, size,
mtime), as for source checkpoints: every engine load re-hashing a multi-GB UNet would cost more
than the load, and any write to the file changes its mtime. Folders are built in a staging folder and
renamed into place, so a killed build leaves nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from refsd_trt.io.hashing import sha256_file
from refsd_trt.paths import cache_dir

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def artifacts_root() -> Path:
    return cache_dir() / "artifacts"


def source_digest(files: list[Path]) -> str:
    """One digest over source files (names relative to their common folder, and contents).

    Large checkpoints are hashed once per (path, size, mtime): the result is remembered under the
    cache, because hashing a 10 GB SDXL folder on every CLI call would dominate a cache hit."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.name.encode() + b"\0" + _memo_sha256(path).encode())
    return digest.hexdigest()


def _memo_sha256(path: Path) -> str:
    stat = path.stat()
    ident = hashlib.sha256(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
    memo = cache_dir() / "digests" / ident
    try:
        return memo.read_text().strip()
    except OSError:
        value = sha256_file(path)
        write_atomic(memo, value.encode())
        return value


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tool_versions(*dists: str) -> dict[str, str]:
    found = {}
    for dist in dists:
        for name in (dist, f"{dist}-opencv-headless", f"{dist}-cu12", f"{dist}-gpu"):
            try:
                found[dist] = version(name)
                break
            except PackageNotFoundError:
                continue
    return found


def content_key(payload: Mapping) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Artifact:
    folder: Path
    manifest: dict

    @property
    def main_file(self) -> Path:
        return self.folder / self.manifest["main_file"]

    def update_manifest(self, **entries) -> Artifact:
        """Add entries (e.g. backend timings) to the manifest; the artifact files are untouched."""
        manifest = {**self.manifest, **entries}
        write_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=2, default=str).encode())
        return Artifact(self.folder, manifest)


class CorruptArtifact(RuntimeError):
    pass


def verify(folder: Path) -> Artifact:
    """The artifact in ``folder`` if its manifest is readable and every file has its recorded hash."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise CorruptArtifact(f"{folder / MANIFEST}: unreadable manifest ({exc})") from None
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            raise CorruptArtifact(f"{path}: missing")
        if path.stat().st_size != want["bytes"] or _memo_sha256(path) != want["sha256"]:
            raise CorruptArtifact(f"{path}: contents do not match the sha256 recorded in its manifest")
    return Artifact(folder, manifest)


def lookup(folder: Path) -> Artifact | None:
    """A verified artifact, or None when absent; a corrupt one is reported, removed and None."""
    if not folder.exists():
        return None
    try:
        return verify(folder)
    except CorruptArtifact as exc:
        log.warning("cached artifact is corrupt, rebuilding it: %s", exc)
        _discard(folder)
        return None


def publish(folder: Path, build: Callable[[Path], dict], main_file: str) -> Artifact:
    """Run ``build(staging)`` (it writes files and returns manifest entries), hash what it wrote,
    add the manifest, and rename the staging folder to ``folder``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        entries = build(staging)
        files = {
            p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(staging.iterdir()) if p.is_file()
        }
        if main_file not in files:
            raise RuntimeError(f"build of {folder.name} wrote no {main_file}")
        text = json.dumps({**entries, "main_file": main_file, "files": files,
                           "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=2, default=str)
        (staging / MANIFEST).write_text(text)
        manifest = json.loads(text)  # what a later cache hit reads back: lists, not tuples
        if folder.exists():  # a corrupt predecessor, or a concurrent build that finished first
            _discard(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Artifact(folder, manifest)


def _discard(folder: Path) -> None:
    """Move aside, then delete: the rename is atomic, so no reader sees a half-deleted folder."""
    trash = folder.with_name(f".trash-{folder.name}-{os.getpid()}")
    try:
        os.replace(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)
