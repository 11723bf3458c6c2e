"""``refsd-trt anonymize``: files, folders, globs and videos in; anonymized files and a manifest out.

Every input ends in exactly one manifest line. Bad inputs get one line naming the file and the
problem while the rest of the batch goes on; outputs appear atomically; inputs are only read.
A failed detection fails its input (no output), because nothing could be promised about it.

Two logs are kept (``refsd_trt.io.manifest``): the published ``OUT/manifest.jsonl`` names inputs by
their relative name (the path their output mirrors) and outputs relative to ``OUT``, with no input
hash and no absolute path, not even in error lines; the private resume state (by default
``OUT/.refsd-trt/state.jsonl``, elsewhere with ``state``, none with ``publish``) holds what
``--resume`` needs: absolute paths, both hashes, the effective configuration. For each input the
published line is written first, so a crash between the two redoes that input on resume rather
than leaving it out of the published manifest.

Memory is bounded by one batch: images are read, anonymized and written a batch at a time, and a
video is streamed frame by frame (decoded, detected and tracked, anonymized ``batch_size`` frames at
a time, encoded; ``refsd_trt.tracking`` holds at most ``track_gap_frames + 2 * batch_size`` frames
for the temporal guard's look-ahead); only the counts and per-track records its manifest line needs
are kept.
"""

from __future__ import annotations

import dataclasses
import os
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
    Discovery,
    InputError,
    InputItem,
    LoadedImage,
    Manifest,
    MediaKind,
    MetadataPolicy,
    OutputError,
    ReadLimits,
    ResumeState,
    VideoWriter,
    assign_outputs,
    clean_stale_temps,
    default_state_path,
    discover_inputs,
    iter_video_frames,
    read_image,
    sha256_file,
    write_image,
)
from refsd_trt.io.errors import one_line, with_causes
from refsd_trt.io.image_read import DEFAULT_LIMITS
from refsd_trt.stages import StageHung

MANIFEST_NAME = "manifest.jsonl"
VIDEO_FALLBACK_REASONS = 20  # distinct fail-safe reasons a video's manifest line lists (all are counted)


class SetupError(RuntimeError):
    """The anonymizer could not be built (configuration or models), or can take no more work (a stage
    abandoned past its limit still runs): no further input can be processed."""


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


@dataclass(frozen=True)
class _Names:
    """One input as the private state names it (absolute) and as the published manifest does
    (relative: the path its output mirrors; the output relative to the output folder)."""

    path: Path  # as discovered (or as the argument was given)
    name: str
    target: Path | None = None
    target_name: str | None = None
    roots: tuple[Path, ...] = ()  # folders whose absolute path never appears in the published manifest

    @classmethod
    def of(cls, item: InputItem, target: Path, out_dir: Path) -> _Names:
        return cls(item.path, item.relative.as_posix(), target, target.relative_to(out_dir).as_posix(),
                   (item.root, out_dir))

    @classmethod
    def argument(cls, path: Path, out_dir: Path) -> _Names:
        """An argument that gave no input: named by its last part, as a file argument's output is."""
        return cls(Path(path), Path(path).name or ".", roots=(out_dir,))

    @property
    def input(self) -> str:
        return str(self.path.resolve())

    @property
    def output(self) -> str | None:
        return str(self.target.resolve()) if self.target is not None else None

    def published(self, text: str) -> str:
        """``text`` (an error line or a note) with every spelling of this input's and output's paths
        replaced by their relative names, and the roots and the home folder left out."""
        swaps: dict[str, str] = {}
        for root in self.roots:
            swaps[str(root.resolve()) + os.sep] = ""
        try:
            swaps[str(Path.home())] = "~"  # a user name, whatever else an error line names
        except RuntimeError:  # no home folder can be determined
            pass
        for path, name in ((self.path, self.name), (self.target, self.target_name)):
            if path is not None and name is not None:
                swaps[str(path)] = swaps[str(path.resolve())] = name
        for old in sorted(swaps, key=len, reverse=True):  # the longest spelling first
            if old not in ("", ".", os.sep):
                text = text.replace(old, swaps[old])
        return text


@dataclass
class _VideoTally:
    """What a video's manifest line says, kept as counts while its frames stream through."""

    frames: int = 0
    people: int = 0
    fallback_count: int = 0
    fallbacks: list[str] = field(default_factory=list)  # distinct reasons, the first VIDEO_FALLBACK_REASONS
    timings: Counter = field(default_factory=Counter)
    method: str | None = None
    preset: str | None = None
    anonymizes: bool = False
    guard: int = 0  # people removed at a predicted box by the temporal guard, over all frames

    def add(self, results: Sequence[AnonymizedImage], guard: int = 0, timed: bool = True) -> None:
        """``guard``: how many of a single result's people are the temporal guard's predicted boxes
        (counted apart from the people detected)."""
        if self.method is None:
            self.method, self.preset, self.anonymizes = results[0].method, results[0].preset, results[0].anonymizes
        self.anonymizes = self.anonymizes and all(r.anonymizes for r in results)
        if timed:
            self.timings.update(results[0].timings)  # one batch, one set of stage timings
        self.guard += guard
        for result in results:
            self.frames += 1
            self.people += len(result.people) - guard
            for reason in result.fallbacks:
                self.fallback_count += 1
                if reason not in self.fallbacks and len(self.fallbacks) < VIDEO_FALLBACK_REASONS:
                    self.fallbacks.append(reason)


class Runner:
    def __init__(self, anonymizer_factory: Callable[[], Anonymizer], out_dir: str | Path, batch_size: int,
                 resume: bool = False, limits: ReadLimits = DEFAULT_LIMITS, progress: bool = True,
                 log: TextIO | None = None, config: Mapping[str, Any] | None = None,
                 state: str | Path | None = None, publish: bool = False):
        """``config``: the run's settings (``RunConfig.to_dict()``); with ``resume``, only inputs an
        earlier run made under the same settings (None: any) are skipped.

        ``state``: the private resume state file (default ``OUT/.refsd-trt/state.jsonl``);
        ``publish``: keep none (``OUT`` then holds only what may be published; ``resume`` is refused).
        """
        if publish and resume:
            raise ValueError("--resume reads the private resume state, which --publish does not write")
        if publish and state is not None:
            raise ValueError("--publish writes no resume state; drop --state or --publish")
        self._factory, self._anonymizer, self.config = anonymizer_factory, None, config
        self.out_dir, self.batch_size, self.resume, self.limits = Path(out_dir), batch_size, resume, limits
        self.progress, self.log = progress, log or sys.stderr  # looked up per run: tests swap sys.stderr
        self.publish = publish
        self.state_path = None if publish else Path(state) if state is not None else default_state_path(out_dir)
        self.summary = RunSummary()
        self._manifest: Manifest | None = None
        self._state: ResumeState | None = None

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
                raise SetupError(with_causes(exc)) from exc
        return self._anonymizer

    def _name_skipped(self, paths: list[Path], why: str, limit: int = 20) -> None:
        """One line per file a folder held that is not processed (the first ``limit``, then a count)."""
        for path in paths[:limit]:
            self.say(f"skipped {path}: {why}")
        if len(paths) > limit:
            self.say(f"skipped {len(paths) - limit} more ({why})")

    def say(self, line: str) -> None:
        tqdm.write(line, file=self.log)

    def _open_logs(self) -> None:
        self._manifest = Manifest(self.out_dir / MANIFEST_NAME)
        legacy = self._manifest.private_lines()
        if legacy:
            self.say(f"note: {self._manifest.path} has {legacy} line(s) from an earlier version that name absolute "
                     "paths and input hashes; remove them before publishing it")
        default = default_state_path(self.out_dir)
        if self.state_path is None:
            if default.parent.exists():
                self.say(f"note: {default.parent} holds an earlier run's private resume state; "
                         "remove it before publishing the output folder")
            self._state = None
            return
        own = self.state_path.resolve() == default.resolve()
        self._state = ResumeState(self.state_path, own_folder=own)
        if self.resume and not self.state_path.exists():
            self.say(f"note: no resume state at {self.state_path}; every input is done")

    def _record(self, public: dict[str, Any], private: dict[str, Any]) -> None:
        """One line in the published manifest, then (unless publishing) one in the private state."""
        assert self._manifest is not None
        self._manifest.append(public)
        if self._state is not None:
            self._state.append(private)

    def run(self, args: Sequence[str]) -> RunSummary:
        start = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.out_dir)
        self._open_logs()
        discovery = self._discover(args)
        for error in discovery.errors:
            self._fail(_Names.argument(error.path, self.out_dir), None, str(error))
        self._name_skipped(discovery.ignored, "not an image or video type")
        self._name_skipped(discovery.hidden, "hidden, not entered")
        try:
            pairs = assign_outputs(discovery.items, self.out_dir)
        except OutputError as exc:
            self.say(f"error: {exc}")
            self.summary.failed += len(discovery.items)
            return self._finish(start)
        done = self._state.done_inputs(self.config) if self.resume and self._state is not None else {}
        todo = []
        for item, target in pairs:
            if str(item.path.resolve()) in done:
                self.summary.skipped += 1
            else:
                todo.append((item, _Names.of(item, target, self.out_dir)))
        images = [p for p in todo if p[0].kind is MediaKind.IMAGE]
        videos = [p for p in todo if p[0].kind is MediaKind.VIDEO]
        with tqdm(total=len(todo), unit="input", disable=not self.progress, file=self.log, dynamic_ncols=True) as bar:
            for begin in range(0, len(images), self.batch_size):
                self._image_batch(images[begin:begin + self.batch_size])
                bar.update(len(images[begin:begin + self.batch_size]))
                bar.set_postfix(people=self.summary.people, failed=self.summary.failed)
            for item, names in videos:
                self._video(item, names)
                bar.update(1)
        return self._finish(start)

    def _discover(self, args: Sequence[str]) -> Discovery:
        """The inputs ``args`` name (the distributed run also takes them from a table)."""
        return discover_inputs(args, exclude=[self.out_dir])

    def _finish(self, start: float) -> RunSummary:
        self.summary.wall_seconds = time.perf_counter() - start
        return self.summary

    def _fail(self, names: _Names, sha: str | None, line: str) -> None:
        """``line`` (console and private state) names the input as given; the published line names it
        relatively."""
        self.summary.failed += 1
        self.summary.errors.append(line)
        self.say(f"error: {line}")
        self._record(
            {"input": names.name, "output": None, "status": "failed", "error": names.published(line),
             "intended_output": names.target_name},
            {"input": names.input, "output": None, "status": "failed", "input_sha256": sha, "error": line,
             "intended_output": names.output},
        )

    def _image_batch(self, batch: list[tuple[InputItem, _Names]]) -> None:
        loaded = []
        for item, names in batch:
            try:
                loaded.append((read_image(item.path, self.limits), names))
            except InputError as exc:
                self._fail(names, None, str(exc))
        self._anonymize_loaded(loaded)

    def _anonymize_loaded(self, loaded: list[tuple[LoadedImage, _Names]]) -> None:
        """Anonymize one batch of decoded images and record each (the distributed run,
        ``refsd_trt.distributed``, calls this in its actors with images decoded by CPU tasks)."""
        if not loaded:
            return
        try:
            results = self.anonymizer([img.pixels for img, _ in loaded], image_keys=[img.sha256 for img, _ in loaded])
        except DetectionFailed as exc:
            for img, names in loaded:
                self._fail(names, img.sha256, f"{img.path}: {exc}")
            return
        except StageHung as exc:
            for img, names in loaded:
                self._fail(names, img.sha256, f"{img.path}: not processed: {exc}")
            raise SetupError(f"{exc}; stopping, the remaining inputs are not processed") from exc
        except SetupError:
            raise
        except Exception as exc:  # noqa: BLE001 -- this batch's inputs fail, named; the run goes on
            for img, names in loaded:
                self._fail(names, img.sha256, f"{img.path}: {one_line(exc)}")
            return
        self.summary.stage_seconds.update(results[0].timings)  # one batch, one set of stage timings
        for (img, names), result in zip(loaded, results):
            assert names.target is not None
            try:
                write_image(_tensor(result), names.target, exif=self.metadata.exif_from(img.path))
            except OutputError as exc:
                self._fail(names, img.sha256, str(exc))
                continue
            people = result.people
            notes = img.notes + result.notes + [n for n in [self.metadata.note_for(names.target)] if n]
            self._ok(names, img.sha256, result.method, result.preset, result.anonymizes, people=people,
                     people_count=len(people), fallbacks=result.fallbacks, fallback_count=len(result.fallbacks),
                     notes=[names.published(n) for n in notes], batch_timings=result.timings,
                     batch_images=len(loaded))

    @property
    def metadata(self) -> MetadataPolicy:
        """What of each input's EXIF its output keeps: the effective configuration's policy."""
        return MetadataPolicy.parse(self.anonymizer.config.keep_metadata)

    def _ok(self, names: _Names, sha: str, method: str | None, preset: str | None, anonymizes: bool,
            people_count: int, fallback_count: int, people: Sequence[Any] | None = None,
            private: Mapping[str, Any] | None = None, **extra: Any) -> None:
        """Per-person seeds derive from the input's hash (so one person keeps one look across runs):
        a published seed would let anyone holding a candidate original confirm it, so seeds are kept
        in the private state only."""
        assert names.target is not None
        self.summary.ok += 1
        self.summary.people += people_count
        self.summary.fallbacks += fallback_count
        anonymizer = self.anonymizer
        config = anonymizer.config.to_dict()
        output_sha = sha256_file(names.target)
        self._record(
            {"input": names.name, "output": names.target_name, "status": "ok", "output_sha256": output_sha,
             "method": method, "preset": preset, "anonymized": anonymizes, "people_count": people_count,
             "fallback_count": fallback_count, "config": config, "metadata": self.metadata.to_dict(),
             "engines": {name: getattr(e, "backend", type(e).__name__) for name, e in anonymizer.engines.items()},
             "people": None if people is None else [{k: v for k, v in dataclasses.asdict(p).items() if k != "seed"}
                                                    for p in people],
             **extra},
            {"input": names.input, "output": names.output, "status": "ok", "input_sha256": sha,
             "output_sha256": output_sha, "anonymized": anonymizes, "config": config,
             "seeds": None if people is None else [p.seed for p in people], **(private or {})},
        )

    def _video(self, item: InputItem, names: _Names) -> None:
        """Frames stream through detection, tracking and the temporal guard (``refsd_trt.tracking``):
        at most ``track_gap_frames + 2 * batch_size`` decoded frames are held; people are keyed by
        track, so each keeps one seed, look and avatar shape for the whole video."""
        from refsd_trt.io.audio import add_audio, audio_streams
        from refsd_trt.tracking import TrackedVideo

        assert names.target is not None
        try:
            sha = sha256_file(item.path)
            frames = iter_video_frames(item.path, self.limits)
        except (InputError, OSError) as exc:
            self._fail(names, None, str(exc) if isinstance(exc, InputError) else f"{item.path}: {exc}")
            return
        tally = _VideoTally()
        config = self.anonymizer.config
        stream = TrackedVideo(self.anonymizer, sha, self.batch_size, int(getattr(config, "track_gap_frames", 10)),
                              fps=frames.info.fps)
        notes: list[str] = []
        try:
            with frames, VideoWriter(names.target, frames.info.fps, (frames.info.width, frames.info.height)) as writer:
                previous: torch.Tensor | None = None
                for out in stream.run(frames.with_gaps()):
                    if out.result is None:  # undecodable: the previous output frame (or grey) keeps the timing
                        filler = previous if previous is not None else torch.full(
                            (3, frames.info.height, frames.info.width), 128, dtype=torch.uint8)
                        writer.write(filler)
                        continue
                    tally.add([out.result], guard=len(out.guard), timed=False)
                    frame = _tensor(out.result)
                    writer.write(frame)
                    previous = frame.clone()  # not a view: the result's image is freed with its batch
                    out = frame = None  # nor held while the next batch is anonymized
                notes += writer.notes
            if frames.info.frame_count > 0 and frames.frames_read + len(frames.skipped) < frames.info.frame_count:
                notes.append(f"the container announces {frames.info.frame_count} frames; "
                             f"{frames.frames_read} could be decoded")
            if getattr(config, "keep_audio", False):
                notes.append(add_audio(names.target, item.path))
            elif audio_streams(item.path):
                notes.append("audio dropped (it can carry voices and names; keep_audio copies it)")
        except (InputError, OutputError) as exc:
            self._fail(names, sha, str(exc))
            return
        except DetectionFailed as exc:
            self._fail(names, sha, f"{item.path}: {exc}")
            return
        except StageHung as exc:
            self._fail(names, sha, f"{item.path}: not processed: {exc}")
            raise SetupError(f"{exc}; stopping, the remaining inputs are not processed") from exc
        except SetupError:
            raise
        except Exception as exc:  # noqa: BLE001 -- this video fails, named (no output); the run goes on
            self._fail(names, sha, f"{item.path}: {one_line(exc)}")
            return
        tally.timings.update(stream.timings)
        self.summary.stage_seconds.update(tally.timings)
        ordered = sorted(stream.tracks.values(), key=lambda r: r.track)
        self._ok(names, sha, tally.method, tally.preset, tally.anonymizes, people=None, people_count=tally.people,
                 fallbacks=tally.fallbacks, fallback_count=tally.fallback_count, frames=tally.frames + len(frames.skipped),
                 guard_count=tally.guard, tracks=[r.public() for r in ordered],
                 frame_failures=stream.failures, frame_failure_count=stream.failure_count,
                 track_gap_frames=stream.gap_frames,
                 notes=[names.published(n) for n in notes + [self.metadata.note_for(names.target)] if n],
                 timings=dict(tally.timings), private={"track_seeds": {str(r.track): r.seed for r in ordered}})
