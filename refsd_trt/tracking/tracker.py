"""Track ids for each frame's people: an adapter over a maintained multi-object tracker.

The tracker is the ``trackers`` package's SORT (Roboflow, Apache-2.0, clean-room implementations
over supervision's detection records), chosen by measurement against the same package's ByteTrack
and OC-SORT and a greedy IoU floor (``bench/tracking.py``; README, "Video"): on synthetic street
scenes with box noise, misses and gaps it made the fewest identity switches and merged ids, at about
0.15 ms per frame. It associates boxes only (IoU with Kalman-predicted boxes), so it needs no
appearance model and sees no pixels.

Every detection gets an id here, even one the tracker leaves unconfirmed (its ``-1``): a person is
never without a key for their prompt and seed. Such a detection takes a fresh id of its own; once
the tracker confirms it, it keeps the tracker's id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from refsd_trt.types import PersonDetections

DEFAULT_TRACKER = "SORTTracker"


def tracker_settings(name: str, conf: float, lost_frames: int = 30, fps: float = 30.0) -> dict[str, Any]:
    """Settings for the ``trackers`` class ``name``: every detection the detector keeps may start or
    continue a track (the detector already applied its threshold ``conf``), a track is confirmed on its
    first detection (no id withheld), and a lost track is remembered ``lost_frames`` frames."""
    common: dict[str, Any] = {"lost_track_buffer": lost_frames, "frame_rate": fps, "minimum_consecutive_frames": 1}
    if name == "ByteTrackTracker":
        return {**common, "track_activation_threshold": conf, "high_conf_det_threshold": conf}
    if name == "OCSORTTracker":
        return {**common, "high_conf_det_threshold": conf}
    if name == "SORTTracker":
        return {**common, "track_activation_threshold": conf}
    raise ValueError(f"unknown tracker {name!r}")


class PeopleTracker:
    """``ids(detections)`` -> one positive int id per person of each successive frame."""

    def __init__(self, conf: float = 0.25, lost_frames: int = 30, fps: float = 30.0, name: str = DEFAULT_TRACKER,
                 settings: Mapping[str, Any] | None = None):
        try:
            import trackers  # imported here so image-only runs never load it
        except ImportError as exc:
            raise ImportError("videos need the people tracker: pip install --no-deps 'trackers==2.6.1' "
                              "(make install does; it declares non-headless OpenCV)") from exc

        self.name = name
        self._tracker = getattr(trackers, name)(**(settings or tracker_settings(name, conf, lost_frames, fps)))
        self._own: dict[int, int] = {}  # tracker id -> our id
        self._pending: dict[int, tuple[Any, int]] = {}  # unconfirmed tracklet (by object id) -> (it, our id)
        self._next = 1

    def _fresh(self) -> int:
        self._next += 1
        return self._next - 1

    def ids(self, detections: PersonDetections) -> list[int]:
        import supervision as sv

        n = len(detections)
        if n == 0:
            boxes, scores = np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        else:
            boxes = detections.boxes.detach().cpu().numpy().astype(np.float32)
            scores = detections.scores.detach().cpu().numpy().astype(np.float32)
        known = {id(t) for t in self._tracker.tracks}
        found = self._tracker.update(sv.Detections(xyxy=boxes, confidence=scores, class_id=np.arange(n)))
        pairs = list(zip(found.class_id.tolist(), found.tracker_id.tolist())) if len(found) else []
        out = [0] * n
        for index, tracked in pairs:
            if tracked >= 0:
                if tracked not in self._own:  # confirmed now: the id its first frame got, if any
                    tracklet = next((t for t in self._tracker.tracks if t.tracker_id == tracked), None)
                    self._own[tracked] = self._pending.pop(id(tracklet), (None, None))[1] or self._fresh()
                out[index] = self._own[tracked]
        # A detection the library left unconfirmed (-1) that started a track this frame: its id now,
        # and the same id once the library confirms that track.
        spawned = [t for t in self._tracker.tracks if id(t) not in known and t.tracker_id == -1]
        for index, tracked in pairs:
            if tracked < 0:
                out[index] = self._fresh()
                if spawned:
                    near = min(spawned, key=lambda t: float(np.abs(np.asarray(t.get_state_bbox()) - boxes[index]).sum()))
                    spawned.remove(near)
                    self._pending[id(near)] = (near, out[index])
        alive = {id(t) for t in self._tracker.tracks}
        self._pending = {k: v for k, v in self._pending.items() if k in alive}
        for index in range(n):  # whatever the library returned, every person has an id
            if out[index] == 0:
                out[index] = self._fresh()
        return out
