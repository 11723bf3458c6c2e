"""Turn command-line arguments (files, folders, globs) into an ordered list of inputs and outputs.

- A file argument is taken if its suffix is an image or video suffix; its root is its folder, so
  its output lands directly in the output folder.
- A folder argument is walked (recursively unless ``recursive=False``); its root is the folder
  itself, so ``photos/a/b.jpg`` given as ``photos`` maps to ``OUT/a/b.jpg``.
- A glob (``*``, ``?``, ``[``, ``**``) is expanded; its root is the longest leading part without
  wildcards, so ``data/*/img.jpg`` maps ``data/x/img.jpg`` to ``OUT/x/img.jpg``.
- Hidden files and folders (dot-names, which include leftover atomic-write temporaries) are
  skipped inside folders; symlinked files are followed, symlinked folders are not (no loops).
- Order is deterministic: arguments in the order given, inside each sorted by path; a file reached
  twice is kept at its first place.
- An argument that matches nothing is reported in ``Discovery.errors`` (one line each) and the
  others go on. Files of other types inside folders are counted in ``Discovery.ignored``.
"""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from refsd_trt.io.errors import InputError, InputErrorKind, OutputError
from refsd_trt.io.formats import VIDEO_OUTPUT_SUFFIX, MediaKind, media_kind

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputItem:
    path: Path  # the file, as reachable from the working folder
    root: Path  # the folder its output path is mirrored from
    kind: MediaKind

    @property
    def relative(self) -> Path:
        return self.path.relative_to(self.root)


@dataclass
class Discovery:
    items: list[InputItem] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)  # one per argument that gave nothing
    ignored: list[Path] = field(default_factory=list)  # files in folders with other suffixes
    hidden: list[Path] = field(default_factory=list)  # hidden files and folders not entered


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(folder: Path, recursive: bool, excluded: list[Path], hidden: list[Path]) -> list[Path]:
    files: list[Path] = []
    for directory, dirs, names in os.walk(folder):
        here = Path(directory)
        hidden += sorted(here / d for d in dirs if recursive and _is_hidden(d))
        hidden += sorted(here / n for n in names if _is_hidden(n))
        dirs[:] = sorted(
            d for d in dirs if recursive and not _is_hidden(d) and (here / d).resolve() not in excluded
        )
        files += [here / name for name in names if not _is_hidden(name)]
    return sorted(files)


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    static = parts[: next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))]
    return Path(*static) if static else Path(".")


def _expand(
    arg: str, recursive: bool, excluded: list[Path], hidden: list[Path]
) -> tuple[list[tuple[Path, Path]], InputError | None]:
    """(file, root) pairs for one argument, or the error that argument gets."""
    path = Path(arg)
    if path.is_dir():
        return [(f, path) for f in _walk(path, recursive, excluded, hidden)], None
    if path.is_file():
        if media_kind(path) is None:
            return [], InputError(path, InputErrorKind.UNSUPPORTED, f"unsupported file type '{path.suffix}'")
        return [(path, path.parent)], None
    if _GLOB_CHARS & set(arg):
        root = _glob_root(arg)
        pairs: list[tuple[Path, Path]] = []
        for match in sorted(glob.glob(arg, recursive=True)):
            found = Path(match)
            if found.is_dir():
                pairs += [(f, root) for f in _walk(found, recursive, excluded, hidden)]
            elif found.is_file():
                pairs.append((found, root))
        if pairs:
            return pairs, None
        return [], InputError(path, InputErrorKind.MISSING, "no files match this pattern")
    if os.path.lexists(path):
        return [], InputError(path, InputErrorKind.NOT_A_FILE, "not a file or folder")
    return [], InputError(path, InputErrorKind.MISSING, "no such file or folder")


def discover_inputs(
    args: Sequence[str], recursive: bool = True, exclude: Sequence[str | Path] = ()
) -> Discovery:
    """Expand ``args`` to inputs. Folders in ``exclude`` (e.g. the output folder) are not entered."""
    excluded = [Path(e).resolve() for e in exclude]
    result = Discovery()
    seen: set[Path] = set()
    for arg in args:
        pairs, error = _expand(arg, recursive, excluded, result.hidden)
        if error is not None:
            result.errors.append(error)
        for file, root in pairs:
            kind = media_kind(file)
            if kind is None:
                result.ignored.append(file)
                continue
            resolved = file.resolve()
            if resolved in seen or any(resolved.is_relative_to(e) for e in excluded):
                continue
            seen.add(resolved)
            result.items.append(InputItem(file, root, kind))
    return result


def output_path(item: InputItem, out_dir: str | Path) -> Path:
    """Where ``item``'s output goes: its path below its root, under ``out_dir``.

    Images keep their suffix (and so their format); videos become ``.mp4`` (see ``formats``).
    Raises ``OutputError`` if that path is the input itself: the input is never overwritten.
    """
    relative = item.relative
    if item.kind is MediaKind.VIDEO:
        relative = relative.with_suffix(VIDEO_OUTPUT_SUFFIX)
    target = Path(out_dir) / relative
    if target.resolve() == item.path.resolve():
        raise OutputError(target, "output path is the input itself; choose another output folder")
    return target


def assign_outputs(items: list[InputItem], out_dir: str | Path) -> list[tuple[InputItem, Path]]:
    """``output_path`` for every item; raises ``OutputError`` naming the inputs if two share an output."""
    pairs = [(item, output_path(item, out_dir)) for item in items]
    by_target: dict[Path, list[Path]] = defaultdict(list)
    for item, target in pairs:
        by_target[target.resolve()].append(item.path)
    clashes = [(target, paths) for target, paths in by_target.items() if len(paths) > 1]
    if clashes:
        target, paths = clashes[0]
        raise OutputError(
            target,
            f"{len(paths)} inputs would be written here ({', '.join(map(str, paths))})"
            + (f"; {len(clashes) - 1} more such clashes" if len(clashes) > 1 else "")
            + ": pass their folders instead of the files, or run them separately",
        )
    return pairs
