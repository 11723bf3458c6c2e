"""``refsd-trt anonymize``: files, folders, globs and videos in; anonymized files and a manifest out.

Every input ends in exactly one manifest line. Bad inputs get one line naming the file and the
problem while the rest of the batch goes on; outputs appear atomically; inputs are only read.
A failed detection fails its input (no output), because nothing could be promised about it.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm

from refsd_trt.api import AnonymizedImage, Anonymizer, DetectionFailed
from refsd_trt.io import (
    InputError,
    InputItem,
    Manifest,
    MediaKind,
    OutputError,
    ReadLimits,
    VideoWriter,
    assign_outputs,
    clean_stale_temps,
    discover_inputs,
    iter_video_frames,
    read_image,
    sha256_file,
    write_image,
)
from refsd_trt.io.errors import one_line
from refsd_trt.io.image_read import DEFAULT_LIMITS

MANIFEST_NAME = "manifest.jsonl"


class SetupError(RuntimeError):
    """The anonymizer could not be built (configuration or models): no input can be processed."""


@dataclass
class RunSummary:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    people: int = 0
    fallbacks: int = 0
    stage_seconds: Counter = field(default_factory=Counter)
    wall_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0: every input done (or already done); 1: at least one input failed."""
        return 1 if self.failed else 0

    def table(self) -> str:
        done = self.ok + self.failed
        rate = done / self.wall_seconds if self.wall_seconds else 0.0
        rows = [("inputs done", self.ok), ("inputs failed", self.failed), ("inputs skipped (resume)", self.skipped),
                ("people replaced", self.people), ("people filled by the fail-safe", self.fallbacks),
                ("wall time", f"{self.wall_seconds:.1f} s ({rate:.2f} inputs/s)")]
        rows += [(f"  {stage}", f"{seconds:.2f} s") for stage, seconds in sorted(self.stage_seconds.items())]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _tensor(result: AnonymizedImage) -> torch.Tensor:
    return torch.from_numpy(result.image).permute(2, 0, 1)


class Runner:
    def __init__(self, anonymizer_factory: Callable[[], Anonymizer], out_dir: str | Path, batch_size: int,
                 resume: bool = False, limits: ReadLimits = DEFAULT_LIMITS, progress: bool = True,
                 log: TextIO | None = None, config: Mapping[str, Any] | None = None):
        """``config``: the run's settings (``RunConfig.to_dict()``); with ``resume``, only inputs an
        earlier run made under the same settings (None: any) are skipped."""
        self._factory, self._anonymizer, self.config = anonymizer_factory, None, config
        self.out_dir, self.batch_size, self.resume, self.limits = Path(out_dir), batch_size, resume, limits
        self.progress, self.log = progress, log or sys.stderr  # looked up per run: tests swap sys.stderr
        self.summary = RunSummary()

    @property
    def loaded(self) -> bool:
        return self._anonymizer is not None

    @property
    def anonymizer(self) -> Anonymizer:
        """Built on first need, so a run with nothing left to do loads no model. A build that fails
        (configuration, missing or broken models) is a ``SetupError``: nothing can run."""
        if self._anonymizer is None:
            try:
                self._anonymizer = self._factory()
            except Exception as exc:  # whatever breaks here, no input can be processed
                raise SetupError(one_line(exc)) from exc
        return self._anonymizer

    def _name_skipped(self, paths: list[Path], why: str, limit: int = 20) -> None:
        """One line per file a folder held that is not processed (the first ``limit``, then a count)."""
        for path in paths[:limit]:
            self.say(f"skipped {path}: {why}")
        if len(paths) > limit:
            self.say(f"skipped {len(paths) - limit} more ({why})")

    def say(self, line: str) -> None:
        tqdm.write(line, file=self.log)

    def run(self, args: Sequence[str]) -> RunSummary:
        start = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.out_dir)
        manifest = Manifest(self.out_dir / MANIFEST_NAME)
        discovery = discover_inputs(args, exclude=[self.out_dir])
        for error in discovery.errors:
            self._fail(manifest, error.path, None, str(error))
        self._name_skipped(discovery.ignored, "not an image or video type")
        self._name_skipped(discovery.hidden, "hidden, not entered")
        try:
            pairs = assign_outputs(discovery.items, self.out_dir)
        except OutputError as exc:
            self.say(f"error: {exc}")
            self.summary.failed += len(discovery.items)
            return self._finish(start)
        done = manifest.done_inputs(self.config) if self.resume else {}
        todo = []
        for item, target in pairs:
            if str(item.path.resolve()) in done:
                self.summary.skipped += 1
            else:
                todo.append((item, target))
        images = [p for p in todo if p[0].kind is MediaKind.IMAGE]
        videos = [p for p in todo if p[0].kind is MediaKind.VIDEO]
        with tqdm(total=len(todo), unit="input", disable=not self.progress, file=self.log, dynamic_ncols=True) as bar:
            for begin in range(0, len(images), self.batch_size):
                self._image_batch(manifest, images[begin:begin + self.batch_size])
                bar.update(len(images[begin:begin + self.batch_size]))
                bar.set_postfix(people=self.summary.people, failed=self.summary.failed)
            for item, target in videos:
                self._video(manifest, item, target)
                bar.update(1)
        return self._finish(start)

    def _finish(self, start: float) -> RunSummary:
        self.summary.wall_seconds = time.perf_counter() - start
        return self.summary

    def _fail(self, manifest: Manifest, path: Path, sha: str | None, line: str, output: Path | None = None) -> None:
        self.summary.failed += 1
        self.summary.errors.append(line)
        self.say(f"error: {line}")
        manifest.append({"input": str(Path(path).resolve()), "output": None, "status": "failed",
                         "input_sha256": sha, "error": line, "intended_output": str(output) if output else None})

    def _image_batch(self, manifest: Manifest, batch: list[tuple[InputItem, Path]]) -> None:
        loaded = []
        for item, target in batch:
            try:
                loaded.append((read_image(item.path, self.limits), target))
            except InputError as exc:
                self._fail(manifest, item.path, None, str(exc), target)
        if not loaded:
            return
        try:
            results = self.anonymizer([img.pixels for img, _ in loaded], image_keys=[img.sha256 for img, _ in loaded])
        except DetectionFailed as exc:
            for img, target in loaded:
                self._fail(manifest, img.path, img.sha256, f"{img.path}: {exc}", target)
            return
        except SetupError:
            raise
        except Exception as exc:  # noqa: BLE001 -- this batch's inputs fail, named; the run goes on
            for img, target in loaded:
                self._fail(manifest, img.path, img.sha256, f"{img.path}: {one_line(exc)}", target)
            return
        self.summary.stage_seconds.update(results[0].timings)  # one batch, one set of stage timings
        for (img, target), result in zip(loaded, results):
            try:
                write_image(_tensor(result), target)
            except OutputError as exc:
                self._fail(manifest, img.path, img.sha256, str(exc), target)
                continue
            self._ok(manifest, img.path, img.sha256, target, [result], notes=img.notes + result.notes,
                     batch_timings=result.timings, batch_images=len(loaded))

    def _ok(self, manifest: Manifest, path: Path, sha: str, target: Path, results: list[AnonymizedImage],
            **extra: Any) -> None:
        first = results[0]
        people = [p for r in results for p in r.people]
        self.summary.ok += 1
        self.summary.people += len(people)
        self.summary.fallbacks += sum(1 for p in people if p.fallback)
        anonymizer = self.anonymizer
        manifest.append({
            "input": str(Path(path).resolve()), "output": str(target.resolve()), "status": "ok", "input_sha256": sha,
            "output_sha256": sha256_file(target),
            "method": first.method, "preset": first.preset, "anonymized": first.anonymizes,
            "people": people if len(results) == 1 else None,
            "people_count": len(people), "fallbacks": [p.fallback for p in people if p.fallback],
            "config": anonymizer.config.to_dict(),
            "engines": {name: getattr(e, "backend", type(e).__name__) for name, e in anonymizer.engines.items()},
            **extra,
        })

    def _video(self, manifest: Manifest, item: InputItem, target: Path) -> None:
        try:
            sha = sha256_file(item.path)
            frames = iter_video_frames(item.path, self.limits)
        except (InputError, OSError) as exc:
            self._fail(manifest, item.path, None, str(exc) if isinstance(exc, InputError) else f"{item.path}: {exc}",
                       target)
            return
        results: list[AnonymizedImage] = []
        try:
            # One key for the whole video: person j keeps the same attributes from frame to frame.
            with frames, VideoWriter(target, frames.info.fps, (frames.info.width, frames.info.height)) as writer:
                batch: list[torch.Tensor] = []
                for frame in frames:
                    batch.append(frame)
                    if len(batch) == self.batch_size:
                        results += self._frames(writer, batch, sha)
                        batch = []
                if batch:
                    results += self._frames(writer, batch, sha)
        except (InputError, OutputError, DetectionFailed) as exc:
            self._fail(manifest, item.path, sha, f"{item.path}: {exc}" if isinstance(exc, DetectionFailed)
                       else str(exc), target)
            return
        self._ok(manifest, item.path, sha, target, results, frames=len(results), notes=writer.notes)

    def _frames(self, writer: VideoWriter, batch: list[torch.Tensor], key: str) -> list[AnonymizedImage]:
        results = self.anonymizer(batch, image_keys=[key] * len(batch))
        self.summary.stage_seconds.update(results[0].timings)
        for result in results:
            writer.write(_tensor(result))
        return results
