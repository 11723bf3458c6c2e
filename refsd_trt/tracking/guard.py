"""The temporal guard: a tracked person the detector misses for a few frames is still removed there.

For each frame about to be written, every track seen within ``gap_frames`` frames of it (before
*or after*: frames wait in a look-ahead buffer of ``gap_frames`` frames) but not detected in it gets
a predicted box:

- inside a detection gap of at most ``gap_frames`` frames: the box interpolated linearly between
  the detections on both sides;
- after a track's last detection (the person left, or is missed for longer): its last box moved
  on at the track's recent velocity;
- before a track's first detection (a person detected late, e.g. entering half occluded): its
  first box moved back at the velocity of its first detections.

Predicted boxes grow by a margin (``INTERPOLATED_MARGIN`` of the box's height on each side,
``EXTRAPOLATED_MARGIN`` more per frame away from the nearest detection), are clipped to the frame,
and are added to the frame's people as box masks marked low-confidence, so every method fills them
from the scene (no avatar: where exactly the person is is a guess).

The guard also smooths each confident person's pose keypoints over neighbouring frames of their
track (``smooth_keypoints``), so avatars follow the person without jitter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from refsd_trt.detection.masks import box_masks
from refsd_trt.types import PersonDetections

INTERPOLATED_MARGIN = 0.10  # of the box's height, each side, between two detections
EXTRAPOLATED_MARGIN = 0.05  # of the box's height, each side, per frame beyond a track's last/first detection
VELOCITY_FRAMES = 4  # detections a track's velocity is averaged over
SMOOTH_RADIUS = 2  # frames each side the keypoints are averaged over


@dataclass
class Observation:
    box: torch.Tensor  # (4,) float, xyxy, cpu
    keypoints: torch.Tensor | None  # (17, 3) float, cpu
    confident: bool


@dataclass
class GuardBox:
    track: int
    box: torch.Tensor  # (4,) clipped to the frame
    how: str  # interpolated | after last detection | before first detection


@dataclass
class TrackHistory:
    """A track's detections by frame index (only the recent ones are kept)."""

    seen: dict[int, Observation] = field(default_factory=dict)

    def before(self, t: int) -> int | None:
        earlier = [f for f in self.seen if f < t]
        return max(earlier) if earlier else None

    def after(self, t: int) -> int | None:
        later = [f for f in self.seen if f > t]
        return min(later) if later else None

    def velocity(self, frames: list[int]) -> torch.Tensor:
        """Mean per-frame box motion over ``frames`` (sorted, at least two), else zero."""
        if len(frames) < 2:
            return torch.zeros(4)
        first, last = frames[0], frames[-1]
        return (self.seen[last].box - self.seen[first].box) / (last - first)


class TemporalGuard:
    """Track histories and the guard boxes they imply.

    ``observe(t, detections, ids)`` is called for frames in order as they are detected;
    ``guard_boxes(t, latest)`` for a frame ``t`` once frames up to ``latest`` (>= t + gap_frames, or
    the video's last frame) have been observed; ``forget(before)`` drops what no later call needs.
    """

    def __init__(self, gap_frames: int):
        if gap_frames < 0:
            raise ValueError(f"gap_frames must not be negative, got {gap_frames}")
        self.gap_frames = gap_frames
        self.tracks: dict[int, TrackHistory] = {}

    def observe(self, t: int, detections: PersonDetections, ids: list[int]) -> None:
        low = detections.low_confidence
        for j, track in enumerate(ids):
            keypoints = None if detections.keypoints is None else detections.keypoints[j].detach().float().cpu()
            confident = True if low is None else not bool(low[j])
            self.tracks.setdefault(track, TrackHistory()).seen[t] = Observation(
                detections.boxes[j].detach().float().cpu(), keypoints, confident)

    def forget(self, before: int) -> None:
        """Drop observations of frames before ``before`` (keeping each track's last ones, for velocity)."""
        for track in list(self.tracks):
            history = self.tracks[track]
            frames = sorted(history.seen)
            keep = set(frames[-VELOCITY_FRAMES:])
            for f in frames:
                if f < before and f not in keep:
                    del history.seen[f]
            if frames[-1] < before - self.gap_frames - 1:
                del self.tracks[track]  # gone for good: no frame still to write can need it

    def guard_boxes(self, t: int, latest: int, size: tuple[int, int]) -> list[GuardBox]:
        """Predicted boxes of the tracks missed in frame ``t`` (``size``: height, width)."""
        n, out = self.gap_frames, []
        if n == 0:
            return out
        for track, history in self.tracks.items():
            if t in history.seen:
                continue
            prev, nxt = history.before(t), history.after(t)
            if nxt is not None and nxt > latest:
                nxt = None  # not observed yet: cannot happen when latest >= t + gap_frames
            boxes: list[tuple[torch.Tensor, str]] = []
            if prev is not None and nxt is not None and nxt - prev - 1 <= n:
                w = (t - prev) / (nxt - prev)
                box = (1 - w) * history.seen[prev].box + w * history.seen[nxt].box
                boxes.append((_grow(box, INTERPOLATED_MARGIN), "interpolated"))
            else:
                if prev is not None and t - prev <= n:
                    recent = sorted(f for f in history.seen if f <= prev)[-VELOCITY_FRAMES:]
                    box = history.seen[prev].box + history.velocity(recent) * (t - prev)
                    boxes.append((_grow(box, INTERPOLATED_MARGIN + EXTRAPOLATED_MARGIN * (t - prev)),
                                  "after last detection"))
                if nxt is not None and nxt - t <= n:
                    first = sorted(f for f in history.seen if nxt <= f <= latest)[:VELOCITY_FRAMES]
                    box = history.seen[nxt].box - history.velocity(first) * (nxt - t)
                    boxes.append((_grow(box, INTERPOLATED_MARGIN + EXTRAPOLATED_MARGIN * (nxt - t)),
                                  "before first detection"))
            for box, how in boxes:
                clipped = _clip(box, size)
                if clipped is not None:
                    out.append(GuardBox(track, clipped, how))
        return out

    def smooth_keypoints(self, t: int, track: int, box: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        """``keypoints`` (17, 3) of ``track`` in frame ``t``, averaged with the track's keypoints in
        the frames up to ``SMOOTH_RADIUS`` away, each expressed relative to its own box (so motion of
        the whole person is not smoothed away), weighted by confidence."""
        history = self.tracks.get(track)
        if history is None:
            return keypoints
        centre, height = _centre_height(box)
        total = torch.zeros(17, 2)
        weight = torch.zeros(17, 1)
        for f in range(t - SMOOTH_RADIUS, t + SMOOTH_RADIUS + 1):
            seen = history.seen.get(f)
            if seen is None or seen.keypoints is None:
                continue
            c, h = _centre_height(seen.box)
            conf = seen.keypoints[:, 2:3].clamp(min=0)
            total += conf * (seen.keypoints[:, :2] - c) / h
            weight += conf
        if float(weight.sum()) == 0:
            return keypoints
        smoothed = keypoints.clone()
        averaged = total / weight.clamp(min=1e-6) * height + centre
        has = weight[:, 0] > 0
        smoothed[has, :2] = averaged[has].to(keypoints.dtype)
        return smoothed


def _centre_height(box: torch.Tensor) -> tuple[torch.Tensor, float]:
    return (box[:2] + box[2:]) / 2, max(float(box[3] - box[1]), 1.0)


def _grow(box: torch.Tensor, share: float) -> torch.Tensor:
    pad = share * float(box[3] - box[1])
    return box + torch.tensor([-pad, -pad, pad, pad])


def _clip(box: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
    height, width = size
    clipped = torch.stack([box[0].clamp(0, width), box[1].clamp(0, height), box[2].clamp(0, width),
                           box[3].clamp(0, height)])
    if float(clipped[2] - clipped[0]) < 1 or float(clipped[3] - clipped[1]) < 1:
        return None
    return clipped


def with_guard(detections: PersonDetections, guard: list[GuardBox]) -> PersonDetections:
    """The frame's people plus the guard's boxes, as box masks marked low-confidence (filled).
    Box edges are rounded outwards so the mask covers every pixel the box touches."""
    if not guard:
        return detections
    device = detections.boxes.device
    height, width = detections.masks.shape[-2:]
    boxes = torch.stack([g.box for g in guard]).to(device, detections.boxes.dtype)
    outer = torch.cat([boxes[:, :2].floor(), boxes[:, 2:].ceil()], dim=1)
    masks = box_masks(outer, height, width)
    n, k = len(detections), len(guard)
    keypoints = None
    if detections.keypoints is not None:
        keypoints = torch.cat([detections.keypoints, torch.zeros((k, 17, 3), dtype=detections.keypoints.dtype,
                                                                 device=device)])
    low = detections.low_confidence if detections.low_confidence is not None else torch.zeros(n, dtype=torch.bool,
                                                                                             device=device)
    return PersonDetections(
        boxes=torch.cat([detections.boxes, boxes]),
        scores=torch.cat([detections.scores, torch.zeros(k, dtype=detections.scores.dtype, device=device)]),
        masks=torch.cat([detections.masks, masks]),
        keypoints=keypoints,
        mask_source=detections.mask_source,
        low_confidence=torch.cat([low.to(device), torch.ones(k, dtype=torch.bool, device=device)]),
    )
