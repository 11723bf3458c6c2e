"""Choose the people tracker by measurement: synthetic street scenes with known identities.

Each scene has people walking across the frame at different speeds (some crossing each other,
some stopping), detector-like box noise, random misses, bursts of missed frames (the case the
temporal guard exists for), low-confidence detections and false positives. Every candidate sees the
same detections; we count identity switches (a person's detection given another id than the one
they had before), identity purity (share of a person's detections carrying their majority id),
merged ids (one id used for two people) and the time per frame.

    .venv/bin/python bench/tracking.py [--scenes 20] [--frames 150]

Candidates: the ``trackers`` package (Roboflow, Apache-2.0: clean-room ByteTrack, OC-SORT and SORT
implementations over supervision's detections) and a greedy IoU matcher as the floor.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

import numpy as np


def scene(rng: np.random.Generator, frames: int, width: int = 640, height: int = 360):
    """(frame -> list of (gt_id, box, score)) for one scene."""
    people = []
    for pid in range(int(rng.integers(3, 7))):
        h = rng.uniform(80, 220)
        w = h * rng.uniform(0.3, 0.45)
        y = rng.uniform(0.3, 0.95) * height - h
        left = rng.random() < 0.5
        x0 = rng.uniform(-w, width * 0.3) if left else rng.uniform(width * 0.6, width)
        vx = rng.uniform(1, 6) * (1 if left else -1)
        vy = rng.uniform(-0.5, 0.5)
        start = int(rng.integers(0, frames // 3))
        stop = int(rng.integers(start + frames // 3, frames + 1))
        pause = (int(rng.integers(start, stop)), int(rng.integers(5, 20))) if rng.random() < 0.3 else (-1, 0)
        people.append({"pid": pid, "w": w, "h": h, "x": x0, "y": y, "vx": vx, "vy": vy, "start": start, "stop": stop,
                       "pause": pause})
    out = []
    burst: dict[int, int] = {}
    for t in range(frames):
        dets = []
        for p in people:
            if not p["start"] <= t < p["stop"]:
                continue
            moving = not (p["pause"][0] <= t < p["pause"][0] + p["pause"][1])
            if moving and t > p["start"]:
                p["x"] += p["vx"]
                p["y"] += p["vy"]
            box = np.array([p["x"], p["y"], p["x"] + p["w"], p["y"] + p["h"]])
            if box[2] < 0 or box[0] > width:
                continue
            if burst.get(p["pid"], 0) > 0:
                burst[p["pid"]] -= 1
                continue
            if rng.random() < 0.03:
                burst[p["pid"]] = int(rng.integers(2, 6))  # a detection gap of 2..5 frames
                continue
            if rng.random() < 0.05:
                continue
            noise = rng.normal(0, 0.04, 4) * np.array([p["w"], p["h"], p["w"], p["h"]])
            score = float(np.clip(rng.normal(0.7, 0.15), 0.12, 0.99))
            dets.append((p["pid"], box + noise, score))
        if rng.random() < 0.05:
            x, y = rng.uniform(0, width - 60), rng.uniform(0, height - 120)
            dets.append((-1, np.array([x, y, x + 50, y + 120]), float(rng.uniform(0.15, 0.5))))
        out.append(dets)
    return out


class GreedyIoU:
    """The floor: each detection takes the id of the previous frame's box it overlaps most (IoU > 0.3)."""

    def __init__(self):
        self.prev: list[tuple[int, np.ndarray]] = []
        self.next_id = 1

    def __call__(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        ids = np.full(len(boxes), -1)
        free = list(self.prev)
        for i, box in enumerate(boxes):
            best, best_iou = None, 0.3
            for k, (tid, other) in enumerate(free):
                iou = _iou(box, other)
                if iou > best_iou:
                    best, best_iou = k, iou
            if best is None:
                ids[i] = self.next_id
                self.next_id += 1
            else:
                ids[i] = free.pop(best)[0]
        self.prev = list(zip(ids.tolist(), boxes))
        return ids


def _iou(a, b):
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def library_tracker(name: str):
    """The adapter the runner uses (refsd_trt.tracking.PeopleTracker) over the ``trackers`` class ``name``."""
    import torch

    from refsd_trt.tracking.tracker import PeopleTracker
    from refsd_trt.types import PersonDetections

    tracker = PeopleTracker(conf=0.25, lost_frames=30, name=name)

    def run(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        det = PersonDetections(torch.from_numpy(boxes.reshape(-1, 4)).float(), torch.from_numpy(scores).float(),
                               torch.zeros((len(boxes), 1, 1), dtype=torch.bool))
        return np.array(tracker.ids(det), dtype=int)

    return run


def evaluate(make, scenes) -> dict:
    switches = purity_hits = total = merged = 0
    seconds = 0.0
    frames = 0
    for dets_per_frame in scenes:
        track = make()
        last: dict[int, int] = {}
        per_person: dict[int, Counter] = defaultdict(Counter)
        owners: dict[int, set] = defaultdict(set)
        for dets in dets_per_frame:
            boxes = np.array([d[1] for d in dets]).reshape(-1, 4)
            scores = np.array([d[2] for d in dets])
            start = time.perf_counter()
            ids = track(boxes, scores)
            seconds += time.perf_counter() - start
            frames += 1
            for (pid, _, _), tid in zip(dets, ids.tolist()):
                if pid < 0:
                    continue
                total += 1
                per_person[pid][tid] += 1
                if tid >= 0:
                    owners[tid].add(pid)
                if pid in last and last[pid] != tid:
                    switches += 1
                last[pid] = tid
        purity_hits += sum(c.most_common(1)[0][1] for c in per_person.values())
        merged += sum(len(o) > 1 for o in owners.values())
    return {"id_switches": switches, "purity": purity_hits / total, "merged_ids": merged,
            "ms_per_frame": 1000 * seconds / frames, "detections": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    scenes = [scene(rng, args.frames) for _ in range(args.scenes)]
    candidates = {"greedy IoU (floor)": GreedyIoU}
    for name in ("ByteTrackTracker", "OCSORTTracker", "SORTTracker"):
        candidates[f"trackers.{name}"] = lambda name=name: library_tracker(name)
    print(f"{args.scenes} scenes x {args.frames} frames (seed {args.seed})")
    print(f"{'tracker':<28} {'id switches':>11} {'purity':>7} {'merged ids':>10} {'ms/frame':>8}")
    for label, make in candidates.items():
        r = evaluate(make, scenes)
        print(f"{label:<28} {r['id_switches']:>11} {r['purity']:>7.3f} {r['merged_ids']:>10} {r['ms_per_frame']:>8.3f}")


if __name__ == "__main__":
    main()
