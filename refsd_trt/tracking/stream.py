"""A video's frames through detection, tracking, the temporal guard and the anonymizer, streaming.

Frames are detected ``batch_size`` at a time and tracked in order; each waits in a look-ahead
buffer until the frames ``gap_frames`` after it have been detected (so the guard can cover a person
missed *before* their first detection, or inside a gap), then is anonymized with its people keyed
by track (one seed, prompt, attributes and avatar shape per track) and handed back in order. At
most ``gap_frames + 2 * batch_size`` decoded frames are held, whatever the video's length; what
outlives them is one small record per track (``TrackRecord``) and the per-frame failures.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from refsd_trt.tracking.guard import SMOOTH_RADIUS, VELOCITY_FRAMES, GuardBox, TemporalGuard, with_guard
from refsd_trt.tracking.tracker import PeopleTracker
from refsd_trt.types import PersonDetections

DEFAULT_GAP_FRAMES = 10  # RunConfig.track_gap_frames: 0.4 s at 25 fps
FRAME_FAILURES = 100  # per-frame failure lines a video's manifest line lists (all are counted)


def track_key(track: int) -> str:
    """The person key a track's prompt and seed derive from (with the video's content key)."""
    return f"track-{track}"


def _ranges(frames: list[int]) -> list[list[int]]:
    """Sorted frame indices as [first, last] runs."""
    out: list[list[int]] = []
    for f in frames:
        if out and f == out[-1][1] + 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return out


@dataclass
class TrackRecord:
    """What a video's manifest line says about one tracked person."""

    track: int
    first_frame: int  # the first and last frame it is removed in (detected, or by the guard)
    last_frame: int
    detected_frames: int = 0
    guard_frames: list[int] = field(default_factory=list)  # frames the temporal guard filled it in
    fallback_frames: int = 0  # frames a fail-safe filled it in
    attributes: dict[str, str] = field(default_factory=dict)
    prompt: str = ""
    seed: int = 0

    def public(self) -> dict[str, Any]:
        """The published record: no seed (it derives from the input's content; the private state has it)."""
        return {"track": self.track, "first_frame": self.first_frame, "last_frame": self.last_frame,
                "detected_frames": self.detected_frames, "guard_frames": _ranges(sorted(self.guard_frames)),
                "guard_frame_count": len(self.guard_frames), "fallback_frames": self.fallback_frames,
                "attributes": self.attributes, "prompt": self.prompt}


@dataclass
class FrameOut:
    index: int
    source: torch.Tensor | None  # the decoded frame, None where it could not be decoded
    result: Any | None  # the AnonymizedImage, None where the frame could not be decoded
    guard: list[GuardBox]
    tracks: list[int]  # the track of each of result.people (detections, then guard boxes)


@dataclass
class _Pending:
    index: int
    image: torch.Tensor | None
    detections: PersonDetections | None = None
    ids: list[int] = field(default_factory=list)


class TrackedVideo:
    """``run(frames)`` -> ``FrameOut`` per frame, in order. ``frames`` yields (3, H, W) uint8 tensors,
    or None for a frame that could not be decoded (it is reported, and written by the caller from
    what it has). ``tracks`` and ``failures`` hold the manifest's records as frames go out."""

    def __init__(self, anonymizer, key: str, batch_size: int, gap_frames: int = DEFAULT_GAP_FRAMES,
                 fps: float = 30.0, tracker: PeopleTracker | None = None):
        self.anonymizer, self.key, self.batch_size, self.gap_frames = anonymizer, key, batch_size, gap_frames
        conf = float(getattr(anonymizer.config, "conf", 0.25))
        self.tracker = tracker or PeopleTracker(conf=conf, lost_frames=max(30, gap_frames), fps=fps)
        self.guard = TemporalGuard(gap_frames)
        self.tracks: dict[int, TrackRecord] = {}
        self.failures: list[dict[str, Any]] = []
        self.failure_count = 0
        self.timings: Counter = Counter()  # seconds per stage over the video (detection included)
        self.peak_pending = 0
        self._pending: deque[_Pending] = deque()
        self._latest = -1

    def fail(self, frame: int, reason: str) -> None:
        self.failure_count += 1
        if len(self.failures) < FRAME_FAILURES:
            self.failures.append({"frame": frame, "reason": reason})

    def run(self, frames: Iterable[torch.Tensor | None]) -> Iterator[FrameOut]:
        batch: list[_Pending] = []
        for index, frame in enumerate(frames):
            batch.append(_Pending(index, frame))
            if len(batch) == self.batch_size:
                self._detect(batch)
                batch = []
                yield from self._flush(final=False)
        if batch:
            self._detect(batch)
        yield from self._flush(final=True)

    def _detect(self, batch: list[_Pending]) -> None:
        decoded = [p for p in batch if p.image is not None]
        if decoded:
            found, seconds = self.anonymizer.detect([p.image for p in decoded])
            self.timings["detect"] += seconds
            for p, det in zip(decoded, found, strict=True):
                p.detections = det.to("cpu") if det.boxes.device.type != "cpu" else det
                p.ids = self.tracker.ids(p.detections)
                self.guard.observe(p.index, p.detections, p.ids)
        self._pending.extend(batch)
        self._latest = batch[-1].index
        self.peak_pending = max(self.peak_pending, len(self._pending))

    def _flush(self, final: bool) -> Iterator[FrameOut]:
        while self._pending:
            ready = 0
            for p in self._pending:
                if not final and p.index + self.gap_frames > self._latest:
                    break
                ready += 1
            if ready == 0 or (ready < self.batch_size and not final):
                return
            chunk = [self._pending.popleft() for _ in range(min(ready, self.batch_size))]
            yield from self._anonymize(chunk)
            if self._pending:
                self.guard.forget(self._pending[0].index - self.gap_frames - SMOOTH_RADIUS - VELOCITY_FRAMES)

    def _anonymize(self, chunk: list[_Pending]) -> Iterator[FrameOut]:
        todo, guards, keys, tracks = [], {}, [], {}
        for p in chunk:
            if p.image is None:
                continue
            assert p.detections is not None
            size = tuple(p.image.shape[-2:])
            guard = self.guard.guard_boxes(p.index, self._latest, size)
            guards[p.index] = guard
            det = self._smoothed(p)
            todo.append((p, with_guard(det, guard)))
            tracks[p.index] = p.ids + [g.track for g in guard]
            keys.append([track_key(t) for t in tracks[p.index]])
        results: Iterator[Any] = iter(())
        if todo:
            done = self.anonymizer([p.image for p, _ in todo], detections=[d for _, d in todo],
                                   image_keys=[self.key] * len(todo), person_keys=keys)
            self.timings.update(done[0].timings)  # one call, one set of stage timings
            results = iter(done)
        for p in chunk:
            if p.image is None:
                self.fail(p.index, "frame could not be decoded; the previous output frame is written in its place")
                yield FrameOut(p.index, None, None, [], [])
                continue
            result = next(results)
            self._record(p.index, result, guards[p.index], tracks[p.index], len(p.ids))
            yield FrameOut(p.index, p.image, result, guards[p.index], tracks[p.index])

    def _smoothed(self, p: _Pending) -> PersonDetections:
        det = p.detections
        assert det is not None
        if det.keypoints is None or not len(det):
            return det
        keypoints = det.keypoints.clone()
        for j, track in enumerate(p.ids):
            keypoints[j] = self.guard.smooth_keypoints(p.index, track, det.boxes[j].float(), det.keypoints[j].float())
        return dataclasses.replace(det, keypoints=keypoints)

    def _record(self, t: int, result, guard: list[GuardBox], tracks: list[int], detected: int) -> None:
        for j, (person, track) in enumerate(zip(result.people, tracks, strict=True)):
            record = self.tracks.get(track)
            if record is None:
                record = self.tracks[track] = TrackRecord(track, t, t, attributes=person.attributes,
                                                          prompt=person.prompt, seed=person.seed)
            record.first_frame, record.last_frame = min(record.first_frame, t), max(record.last_frame, t)
            if j < detected:
                record.detected_frames += 1
            else:
                g = guard[j - detected]
                record.guard_frames.append(t)
                person.notes = [(f"temporal guard: track {track} not detected in this frame ({g.how}); "
                                 "its predicted box is filled")]
            if person.fallback:
                record.fallback_frames += 1
                self.fail(t, f"track {track}: {person.fallback}")
