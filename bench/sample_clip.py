"""A short clip made from the packaged sample photos, anonymized by ``lite``, and a strip of its frames.

The three people of ultralytics' ``bus.jpg`` (cut out by the lite detector's own masks) walk across
scikit-image's ``rocket`` photo (no people in it) at different speeds, two of them crossing. The clip
goes through ``refsd-trt anonymize``'s runner with the lite preset (tracking, temporal guard) and the
strip shows every ``--every``-th frame, input above output.

    .venv/bin/python bench/sample_clip.py -o video-out [--frames 30] [--every 6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from refsd_trt.samples import SAMPLE_PEOPLE, sample_image_paths

HEIGHT, WIDTH = 360, 640


def sprites() -> list[tuple[np.ndarray, np.ndarray]]:
    """(rgb, alpha) cut-outs of bus.jpg's people, scaled to about 60 % of the clip's height."""
    from refsd_trt.api import Anonymizer

    (bus,) = sample_image_paths(("bus",))
    photo = np.asarray(Image.open(bus).convert("RGB"))
    found = Anonymizer.from_preset("lite", verify_identity="off").detector.detect(
        [torch.from_numpy(photo.copy()).permute(2, 0, 1)])[0]
    out = []
    for x0, y0, x1, y1 in SAMPLE_PEOPLE["bus"]:
        known = torch.tensor([x0, y0, x1, y1], dtype=torch.float32)
        j = int(torch.argmin((found.boxes - known).abs().sum(1)))
        mask = found.masks[j].numpy()[y0:y1, x0:x1]
        rgb, alpha = photo[y0:y1, x0:x1], mask.astype(np.float32)
        scale = 0.6 * HEIGHT / (y1 - y0)
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        out.append((np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR)),
                    np.asarray(Image.fromarray((alpha * 255).astype(np.uint8)).resize(size, Image.BILINEAR)) / 255))
    return out


def background() -> np.ndarray:
    from skimage import data

    rocket = data.rocket()  # 427 x 640, a launch pad: nobody in it
    return np.ascontiguousarray(rocket[rocket.shape[0] - HEIGHT:, :WIDTH])


def make_clip(path: Path, frames: int, fps: float = 10.0) -> None:
    from refsd_trt.io import VideoWriter

    people = sprites()
    scene = background()
    # start x, speed (px per frame), foot line y
    paths = [(-60.0, 14.0, HEIGHT - 10), (WIDTH - 40.0, -12.0, HEIGHT - 30), (220.0, 4.0, HEIGHT - 4)]
    with VideoWriter(path, fps, (WIDTH, HEIGHT)) as writer:
        for t in range(frames):
            frame = scene.astype(np.float32)
            for (rgb, alpha), (x0, speed, foot) in zip(people, paths):
                h, w = alpha.shape
                x, y = round(x0 + speed * t), foot - h
                c0, c1, r0, r1 = max(x, 0), min(x + w, WIDTH), max(y, 0), min(y + h, HEIGHT)
                if c1 <= c0 or r1 <= r0:
                    continue
                a = alpha[r0 - y:r1 - y, c0 - x:c1 - x, None]
                frame[r0:r1, c0:c1] = a * rgb[r0 - y:r1 - y, c0 - x:c1 - x] + (1 - a) * frame[r0:r1, c0:c1]
            writer.write(torch.from_numpy(frame.round().astype(np.uint8)).permute(2, 0, 1).contiguous())


def strip(source: Path, output: Path, every: int, target: Path, width: int = 200) -> None:
    from refsd_trt.io import iter_video_frames

    rows = []
    for path in (source, output):
        with iter_video_frames(path) as frames:
            picked = [f.permute(1, 2, 0).numpy() for i, f in enumerate(frames) if i % every == 0]
        height = round(width * HEIGHT / WIDTH)
        rows.append(np.concatenate([np.asarray(Image.fromarray(p).resize((width, height), Image.LANCZOS))
                                    for p in picked], axis=1))
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(target)


def main() -> None:
    from refsd_trt.api import Anonymizer
    from refsd_trt.config import RunConfig
    from refsd_trt.runner import Runner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="video-out")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--every", type=int, default=6)
    parser.add_argument("--strip", default="bench/figures/video-lite-strip.png")
    args = parser.parse_args()
    out = Path(args.output)
    clip = out / "input" / "walkers.mp4"
    clip.parent.mkdir(parents=True, exist_ok=True)
    make_clip(clip, args.frames)
    config = RunConfig(preset="lite")
    runner = Runner(lambda: Anonymizer.from_preset(config=config), out / "anonymized", batch_size=4, progress=False,
                    publish=True)
    summary = runner.run([str(clip)])
    print(summary.table())
    (line,) = [json.loads(x) for x in (out / "anonymized" / "manifest.jsonl").read_text().splitlines()]
    print(json.dumps({k: line.get(k) for k in ("frames", "people_count", "guard_count", "fallback_count",
                                                "frame_failures", "tracks", "notes")}, indent=1))
    strip(clip, out / "anonymized" / "walkers.mp4", args.every, Path(args.strip))
    print(f"strip: {args.strip}")


if __name__ == "__main__":
    main()
