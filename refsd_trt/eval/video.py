"""``refsd-trt eval`` on videos: per-frame identity leaks, people kept, and temporal stability.

An original video and an anonymized one (same frame count; every ``every``-th frame judged) are
compared by the image eval's independent judges:

- identity leaks: dlib faces of the original frame on the judge's people (faces found elsewhere, in
  textures, are counted apart), looked for in the output frame (distance under 0.6 at the face's
  place or to any face found there, as for photos), per frame and overall;
- people kept: the YOLOv8n judge's people of the original found again in the output at IoU >= 0.5;
- temporal stability: the original's people (the judge's boxes) are tracked with the runner's tracker;
  for each track and each pair of consecutive judged frames, the mean absolute change (0..1) of its
  box's content, resized to 32x64 grey, in the output, beside the same figure in the original (the
  person's own motion). A replacement that flickers changes much more than the person did.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

STABILITY_SIZE = (32, 64)  # width, height of the grey crop a track's change is measured on


def _crop(image: np.ndarray, box: Sequence[float]) -> np.ndarray | None:
    h, w = image.shape[:2]
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, STABILITY_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _inside(box: Sequence[float], people: np.ndarray) -> bool:
    """Whether the centre of ``box`` lies in any of the (n, 4) ``people`` boxes."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return bool(((people[:, 0] <= cx) & (cx <= people[:, 2]) & (people[:, 1] <= cy) & (cy <= people[:, 3])).any())


def _frames(path: Path):
    from refsd_trt.io import iter_video_frames

    with iter_video_frames(path) as frames:
        for frame in frames:
            yield frame.permute(1, 2, 0).numpy()


def evaluate_video(original: Path, anonymized: Path, every: int = 1, faces=None, people=None) -> dict[str, Any]:
    """The figures for one anonymized video against its original (``faces``: a FaceIdentity,
    ``people``: a PoseEvaluator; built here when not given)."""
    from refsd_trt.eval.faces import FaceIdentity, match_faces
    from refsd_trt.eval.people import PoseEvaluator, match_people
    from refsd_trt.tracking import PeopleTracker
    from refsd_trt.types import PersonDetections

    faces = faces or FaceIdentity()
    people = people or PoseEvaluator()
    tracker = PeopleTracker(conf=0.25)
    per_frame, last_crops = [], {}
    changes_out, changes_ref = [], []
    pairs = zip(_frames(original), _frames(anonymized), strict=False)
    for index, (source, output) in enumerate(pairs):
        if index % every:
            continue
        if source.shape != output.shape:  # an odd size stored one column/row smaller
            h, w = min(source.shape[0], output.shape[0]), min(source.shape[1], output.shape[1])
            source, output = source[:h, :w], output[:h, :w]
        found_src, found_out = people([source, output])
        # Only faces on the judge's people count: HOG finds faces in textures (a launch tower's
        # lattice, score 0.04), which are the same unchanged background in both frames.
        found_faces = faces.faces(source)
        on_people = [f for f in found_faces if _inside(f.box, found_src.boxes)]
        matches = match_faces(faces, on_people, output)
        kept = match_people(found_src, found_out)
        det = PersonDetections(torch.from_numpy(found_src.boxes).float(), torch.ones(len(found_src)),
                               torch.zeros((len(found_src), 1, 1), dtype=torch.bool))
        ids = tracker.ids(det)
        crops = {}
        for track, box in zip(ids, found_src.boxes):
            a, b = _crop(source, box), _crop(output, box)
            if a is None or b is None:
                continue
            crops[track] = (a, b)
            if track in last_crops:
                changes_ref.append(float(np.abs(a - last_crops[track][0]).mean()))
                changes_out.append(float(np.abs(b - last_crops[track][1]).mean()))
        last_crops = crops
        per_frame.append({"frame": index, "faces": len(matches), "leaks": sum(m.leaked for m in matches),
                          "faces_off_people": len(found_faces) - len(on_people),
                          "people": len(kept), "kept": sum(k.kept for k in kept)})
    faces_total = sum(f["faces"] for f in per_frame)
    people_total = sum(f["people"] for f in per_frame)
    return {
        "frames": len(per_frame),
        "identity_leak_rate": sum(f["leaks"] for f in per_frame) / faces_total if faces_total else None,
        "frames_with_leak": sum(1 for f in per_frame if f["leaks"]),
        "faces": faces_total,
        "people_kept": sum(f["kept"] for f in per_frame) / people_total if people_total else None,
        "people": people_total,
        "temporal_change": float(np.mean(changes_out)) if changes_out else None,
        "temporal_change_original": float(np.mean(changes_ref)) if changes_ref else None,
        "track_steps": len(changes_out),
        "per_frame": per_frame,
    }


def evaluate_videos(videos: Sequence[Path], out_dir: Path, method_names: Sequence[str] | None,
                    given: dict[str, Path], config, say=print) -> dict[str, Any]:
    """Each video through each preset named (default: ``lite``; run by the anonymize runner, so with
    tracking and the temporal guard) and each ``given`` folder (its output at the video's name, as
    .mp4), judged by ``evaluate_video``; written to ``out_dir/eval-video.json``."""
    import json

    from refsd_trt.api import Anonymizer
    from refsd_trt.eval.faces import FaceIdentity
    from refsd_trt.eval.people import PoseEvaluator
    from refsd_trt.io.formats import VIDEO_OUTPUT_SUFFIX
    from refsd_trt.runner import Runner

    names = ["lite"] if method_names is None else list(method_names)
    outputs: dict[str, Path] = {name: out_dir / "outputs" / name for name in names}
    for name in names:
        say(f"{name}: anonymizing {len(videos)} video(s)")
        run_config = config.merged({"preset": name})
        Runner(lambda c=run_config: Anonymizer.from_preset(config=c), outputs[name], run_config.batch_size,
               progress=False, publish=True).run([str(v) for v in videos])
    outputs.update(given)
    faces, people = FaceIdentity(), PoseEvaluator(conf=config.conf)
    report: dict[str, Any] = {"videos": [str(v) for v in videos], "methods": {}}
    for name, folder in outputs.items():
        report["methods"][name] = {}
        for video in videos:
            anonymized = folder / (Path(video).stem + VIDEO_OUTPUT_SUFFIX)
            if not anonymized.is_file():
                say(f"error: {name}: no anonymized version of {Path(video).name} in {folder}")
                report["methods"][name][Path(video).name] = {"error": "no output"}
                continue
            say(f"{name}: judging {Path(video).name}")
            report["methods"][name][Path(video).name] = evaluate_video(Path(video), anonymized, faces=faces,
                                                                      people=people)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval-video.json").write_text(json.dumps(report, indent=1))
    return report


def video_table(report: dict[str, Any]) -> str:
    rows = [("method", "video", "frames", "leak rate", "frames w/ leak", "people kept", "change (orig.)")]
    for name, videos in report["methods"].items():
        for video, r in videos.items():
            if "error" in r:
                rows.append((name, video, "-", r["error"], "", "", ""))
                continue
            fmt = lambda v: "-" if v is None else f"{v:.3f}"
            rows.append((name, video, str(r["frames"]), f"{fmt(r['identity_leak_rate'])} of {r['faces']}",
                         str(r["frames_with_leak"]), f"{fmt(r['people_kept'])} of {r['people']}",
                         f"{fmt(r['temporal_change'])} ({fmt(r['temporal_change_original'])})"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)
