"""``make check-real-layout``: both real presets through the CLI on the real-layout zoo at full size
(random weights, every tensor at its real size), reporting each run's time and peak RSS per stage.

Slow and memory-hungry (tens of GB of weights are written once into the cache); not part of
``make test``, which runs the same on the narrowed zoo. Usage:
``python -m refsd_trt.models.check_real_layout [--backend torch] [--preset inpaint] [--shrink]``.

Each run is a child process (a fresh peak); a thread there samples its RSS and books each sample to
the stage running (``setup``: loading and building engines, before the first stage).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

# The fewest denoising steps (each minutes for a full-size SDXL UNet on a CPU): refsd's removal one
# (removal_steps 1) and refinement one (strength 0.6 of 2 steps); inpaint two, from noise (strength 1 of 2
# leading steps starts at t 501, its anonymization floor; at the preset's 0.6 the floor needs 10 steps, 6 run).
FLAGS = {"refsd": ["--steps", "2"], "inpaint": ["--steps", "2", "--strength", "1"]}
SAMPLE_S = 0.1


def _track_stages(peaks: dict[str, int], setup_s: list[float]) -> None:
    """Book the process's RSS, sampled, to the stage ``StageTimer`` is in; ``setup_s`` gets the
    seconds until the first stage starts."""
    import psutil

    from refsd_trt.stages import StageTimer

    current, start = ["setup"], time.monotonic()
    timed = StageTimer.__call__

    @contextmanager
    def tracked(self, stage: str):
        if not setup_s:
            setup_s.append(time.monotonic() - start)
        outer, current[0] = current[0], stage
        try:
            with timed(self, stage):
                yield
        finally:
            current[0] = outer

    StageTimer.__call__ = tracked
    process = psutil.Process()

    def sample() -> None:
        while True:
            rss = process.memory_info().rss
            peaks[current[0]] = max(peaks.get(current[0], 0), rss)
            time.sleep(SAMPLE_S)

    threading.Thread(target=sample, daemon=True).start()


def child(preset: str, backend: str, work: Path) -> int:
    """One run of the CLI in this process; writes ``work/peaks-<preset>-<backend>.json``."""
    import numpy as np
    from PIL import Image

    from refsd_trt.cli import main

    peaks: dict[str, int] = {}
    setup_s: list[float] = []
    _track_stages(peaks, setup_s)
    photo = work / "street.png"
    Image.fromarray((np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)).save(photo)
    (work / "run.toml").write_text("removal_steps = 1\n")
    code = main(["anonymize", str(photo), "-o", str(work / f"out-{preset}-{backend}"), "--preset", preset,
                 "--backend", backend, "--device", "cpu", *FLAGS[preset], "--batch-size", "1",
                 "--crop-batch-size", "1", "--config", str(work / "run.toml"), "-q"])
    (work / f"peaks-{preset}-{backend}.json").write_text(json.dumps({"rss": peaks, "setup_s": setup_s[:1]}))
    return code


def run(preset: str, backend: str, environ: dict[str, str], work: Path) -> dict:
    start = time.monotonic()
    code = subprocess.run([sys.executable, "-m", "refsd_trt.models.check_real_layout", "--child", preset, backend,
                           str(work)], env={**os.environ, **environ}, check=False).returncode
    manifest, peaks = work / f"out-{preset}-{backend}" / "manifest.jsonl", work / f"peaks-{preset}-{backend}.json"
    record = json.loads(manifest.read_text().splitlines()[-1]) if manifest.exists() else {}
    measured = json.loads(peaks.read_text()) if peaks.exists() else {"rss": {}, "setup_s": []}
    peak, seconds = measured["rss"], {**(record.get("batch_timings") or {}), "setup": sum(measured["setup_s"])}
    return {"preset": preset, "backend": backend, "exit": code, "status": record.get("status"),
            "fallbacks": record.get("fallbacks"), "wall_s": round(time.monotonic() - start, 1),
            "peak_rss_gb": round(max(peak.values(), default=0) / 1e9, 2),
            "stages": {stage: {"s": round(seconds.get(stage, 0.0), 2),
                               "peak_rss_gb": round(rss / 1e9, 2)} for stage, rss in peak.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=["torch", "auto"], help="default: torch and auto")
    parser.add_argument("--shrink", action="store_true", help="the narrowed CI zoo instead of full size")
    parser.add_argument("--preset", action="append", choices=list(FLAGS), help="default: refsd and inpaint")
    parser.add_argument("--child", nargs=3, metavar=("PRESET", "BACKEND", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child[0], args.child[1], Path(args.child[2]))
    from refsd_trt.models import real_layout_zoo

    start = time.monotonic()
    # Built in a child: the process that writes the full-size weights keeps about 11 GB after it
    # (measured), which the runs below need; here the build is then only found in the cache.
    build = "import sys; from refsd_trt.models import real_layout_zoo; real_layout_zoo.build(sys.argv[1] == 'shrink')"
    subprocess.run([sys.executable, "-c", build, "shrink" if args.shrink else "full"], check=True)
    zoo = real_layout_zoo.build(shrink=args.shrink)
    print(json.dumps({"zoo": str(zoo.root), "build_s": round(time.monotonic() - start, 1)}), flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.preset or list(FLAGS):
            for backend in args.backend or ["torch", "auto"]:
                results.append(run(preset, backend, zoo.environ(), Path(tmp)))
                print(json.dumps(results[-1]), flush=True)
    return 0 if all(r["exit"] == 0 and r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
