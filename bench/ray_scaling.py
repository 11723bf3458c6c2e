"""The distributed run's scaling and overhead on this machine, in one run (``refsd_trt.distributed``).

    python -m refsd_trt.bench.ray_scaling [--copies 2] [--preset lite] [--out /tmp/ray-scaling]

On a local Ray instance (``num_cpus`` = this machine's cores), the packaged sample photos
(``refsd_trt.samples.sample_image_paths``, each in ``copies`` folders) go through:

1. ``--preset`` (default ``lite``) with 1, then 2 CPU actors of one thread each: throughput from the
   first batch reported to the last (actor start-up and model build left out: the first batch
   carries them), and the ratio of the two. Start-up is reported apart.
2. The same 1-actor figure against the single-process run with one torch thread (as each actor
   has): the difference per image is what Ray costs with the model.
3. Ray's own cost per image: a pass-through anonymizer (returns the image, finds nobody), so what is
   left is decoding, moving the pixels through the object store, writing and recording, with 1
   actor (``pass-copies`` copies), against the single-process run of the same pass-through: the
   difference per image (negative where Ray's decode tasks overlap the actor's writing).

Prints one JSON object. The load average is printed too: the figures are only comparable on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from refsd_trt.api import AnonymizedImage, Anonymizer
from refsd_trt.config import RunConfig
from refsd_trt.distributed import DistributedRunner, RayOptions
from refsd_trt.presets import PRESETS
from refsd_trt.runner import Runner
from refsd_trt.samples import sample_image_paths


class PassThrough:
    """Finds nobody, returns the image: everything but the model."""

    def __init__(self, config: RunConfig):
        self.config, self.engines, self.preset = config, {}, PRESETS["tiny"]

    def __call__(self, images, image_keys=None, **_):
        return [AnonymizedImage(np.ascontiguousarray(i.permute(1, 2, 0).numpy()), [], {"none": 0.0}, "none", "none",
                                False) for i in images]


def _pass_through(config: RunConfig) -> PassThrough:
    return PassThrough(config)


def _inputs(folder: Path, copies: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for copy in range(copies):
        (folder / f"c{copy}").mkdir(exist_ok=True)
        for path in sample_image_paths():
            shutil.copyfile(path, folder / f"c{copy}" / path.name)
    return folder


def _steady(runner: DistributedRunner) -> tuple[float, float]:
    """(inputs/s from the first report to the last, seconds from the start to the first report)."""
    times = runner.report_times
    after_first = sum(n for _t, n in times[1:])
    span = times[-1][0] - times[0][0]
    return (after_first / span if span > 0 else float("nan")), times[0][0]


def _distributed(factory, inputs: Path, out: Path, config: RunConfig, actors: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    runner = DistributedRunner(factory, out, config.batch_size, preset="lite",
                               options=RayOptions(actors=actors, actor_cpus=0.75, threads=1, decode_cpus=0.25),
                               progress=False, config=config.to_dict(), publish=True)
    start = time.perf_counter()
    summary = runner.run([str(inputs)])
    wall = time.perf_counter() - start
    rate, first = _steady(runner)
    assert summary.failed == 0, summary.errors
    return {"actors": actors, "inputs": summary.ok, "wall_s": round(wall, 2),
            "start_to_first_batch_s": round(first - start, 2), "steady_inputs_per_s": round(rate, 4)}


class _Timed:
    """An anonymizer that notes when each call ended (batch_size 1: one image a call)."""

    def __init__(self, inner):
        self.inner, self.ends = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        results = self.inner(*args, **kwargs)
        self.ends.append(time.perf_counter())
        return results


def _single(factory, inputs: Path, out: Path, config: RunConfig) -> float:
    """Seconds per image of the single-process run, from the first image's end to the last's (as
    the distributed figures are)."""
    shutil.rmtree(out, ignore_errors=True)
    timed = _Timed(factory())
    runner = Runner(lambda: timed, out, config.batch_size, progress=False, config=config.to_dict(), publish=True)
    runner.run([str(inputs)])
    return (timed.ends[-1] - timed.ends[0]) / (len(timed.ends) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=6, help="copies of the sample photos (default 6)")
    parser.add_argument("--pass-copies", type=int, default=40,
                        help="copies for the pass-through overhead run (default 40)")
    parser.add_argument("--preset", default="lite")
    parser.add_argument("--out", default="/tmp/refsd-trt-ray-scaling")
    args = parser.parse_args()
    import ray
    import torch

    root = Path(args.out)
    inputs = _inputs(root / "in", args.copies)
    cores = os.cpu_count() or 1
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, object_store_memory=300 * 2**20)
    config = RunConfig().merged({"preset": args.preset, "batch_size": 1, "verify_identity": "off"}).resolved(
        PRESETS[args.preset])
    model = functools.partial(Anonymizer.from_preset, config=config)
    load = os.getloadavg()
    runs = [_distributed(model, inputs, root / f"ray{n}", config, n) for n in (1, 2)]
    passthrough = functools.partial(_pass_through, config)
    many = _inputs(root / "in-pass", args.pass_copies)
    ray_pass = _distributed(passthrough, many, root / "ray-pass", config, 1)
    ray.shutdown()
    torch.set_num_threads(1)  # as in each actor
    single_model = _single(model, inputs, root / "single", config)
    single_pass = [_single(passthrough, many, root / "single-pass", config) for _ in range(3)]
    per_image_ray = 1 / ray_pass["steady_inputs_per_s"]
    per_image_model = 1 / runs[0]["steady_inputs_per_s"]
    print(json.dumps({
        "cores": cores, "load_average_at_start": [round(v, 2) for v in load], "preset": args.preset,
        "photos": [p.name for p in sample_image_paths()], "copies": args.copies, "batch_size": 1,
        "runs": runs, "ratio_2_over_1_actor": round(runs[1]["steady_inputs_per_s"] / runs[0]["steady_inputs_per_s"], 3),
        "single_process_1_thread_s_per_image": round(single_model, 4),
        "ray_1_actor_s_per_image": round(per_image_model, 4),
        "ray_overhead_s_per_image_with_the_model": round(per_image_model - single_model, 4),
        "pass_through": {"ray_1_actor": ray_pass, "ray_s_per_image": round(per_image_ray, 4),
                         "pass_through_copies": args.pass_copies,
                         "single_process_s_per_image": round(statistics.median(single_pass), 4),
                         "ray_overhead_s_per_image": round(per_image_ray - statistics.median(single_pass), 4)},
    }, indent=2))


if __name__ == "__main__":
    main()
