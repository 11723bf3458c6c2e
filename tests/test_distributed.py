"""The distributed run (refsd_trt.distributed) on a local Ray instance (2 CPUs): the same outputs and
manifest lines as the single-process run (tiny and lite presets, a bad input in the middle), an actor
killed mid-batch (every input one output, one manifest line), resume after the whole job was killed,
and the one line ``--ray`` gives without Ray."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from refsd_trt import distributed
from refsd_trt.api import AnonymizedImage, Anonymizer
from refsd_trt.cli import main
from refsd_trt.config import RunConfig
from refsd_trt.distributed import (
    MISSING_RAY,
    DistributedRunner,
    RayOptions,
    _Shard,
    merge_shards,
    ray_available,
    read_input_table,
    shard_folder,
)
from refsd_trt.io import Manifest, ResumeState
from refsd_trt.presets import PRESETS
from refsd_trt.runner import Runner


def needs_ray(test):
    """A test on the local Ray instance: skipped without Ray; slow (actors import torch and build models)."""
    skip = pytest.mark.skipif(not ray_available(), reason="needs Ray Data: pip install 'refsd-trt[distributed]'")
    return pytest.mark.slow(skip(test))
real_merge = merge_shards
VOLATILE = ("written_at", "batch_timings", "timings")  # when and how long; everything else must be equal


@pytest.fixture(scope="module")
def ray_local():
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this file's factories reach the actors
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 2**20, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _photos(folder: Path, sample_images, side: int = 96, bad_at: int | None = None) -> Path:
    """Small crops of the packaged photos (and a flat grey image), with an unreadable file at ``bad_at``."""
    folder.mkdir(parents=True, exist_ok=True)
    images = [(name, image) for name, image in sample_images] + [("grey", np.full((80, 120, 3), 128, np.uint8))]
    names = []
    for name, image in images:
        picture = Image.fromarray(image)
        picture.thumbnail((side, side))
        picture.save(folder / f"{name}.png")
        names.append(f"{name}.png")
    if bad_at is not None:  # discovery sorts by name: the bad one comes right after this one
        (folder / names[bad_at]).rename(folder / f"{names[bad_at][:-4]}-a.png")
        (folder / f"{names[bad_at][:-4]}-b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def _config(preset: str, **overrides) -> RunConfig:
    """``backend = auto`` picks engines by timing, recorded per machine and thread count (an actor has
    its own): equal results need the same engines, so the tests name the backend."""
    return RunConfig().merged({"preset": preset, "verify_identity": "off", "backend": "onnxruntime",
                               **overrides}).resolved(PRESETS[preset])


def _single(inputs: Path, out: Path, config: RunConfig):
    runner = Runner(functools.partial(Anonymizer.from_preset, config=config), out, config.batch_size,
                    progress=False, config=config.to_dict())
    return runner.run([str(inputs)])


def _distributed(inputs: Path, out: Path, config: RunConfig, factory=None, resume=False, **options):
    runner = DistributedRunner(factory or functools.partial(Anonymizer.from_preset, config=config), out,
                               config.batch_size, options=RayOptions(**options), preset=config.preset,
                               device=config.device, progress=False, config=config.to_dict(), resume=resume)
    return runner.run([str(inputs)])


def _lines(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE}
            for line in path.read_text().splitlines() if line.strip()]


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".refsd-trt" not in p.parts and p.name != "manifest.jsonl"}


def _assert_same_run(single: Path, distributed: Path):
    assert _files(distributed) == _files(single)  # outputs byte for byte, nothing else left behind
    assert _lines(distributed / "manifest.jsonl") == _lines(single / "manifest.jsonl")
    private = [{**r, "input": r["input"].replace(str(distributed), str(single)),
                "output": r["output"] and r["output"].replace(str(distributed), str(single)),
                "intended_output": r.get("intended_output") and r["intended_output"].replace(
                    str(distributed), str(single))}
               for r in _lines(distributed / ".refsd-trt" / "state.jsonl")]
    assert [{k: v for k, v in r.items() if v is not None} for r in private] == [
        {k: v for k, v in r.items() if v is not None} for r in _lines(single / ".refsd-trt" / "state.jsonl")]
    assert not shard_folder(distributed, None, False).exists()  # merged, then removed


@needs_ray
def test_lite_equals_the_single_process_run(ray_local, sample_images, tmp_path):
    astronaut = [(n, i) for n, i in sample_images if n == "astronaut"] or sample_images[:1]
    inputs = _photos(tmp_path / "in", astronaut, side=128)
    config = _config("lite", batch_size=1)
    single = _single(inputs, tmp_path / "single", config)
    summary = _distributed(inputs, tmp_path / "ray", config, actors=1,
                           threads=torch.get_num_threads())  # lite's floats depend on the thread count
    assert summary.ok == single.ok == 2 and summary.people == single.people >= 1
    _assert_same_run(tmp_path / "single", tmp_path / "ray")


class _Bomb(AnonymizedImage):
    """A result whose pixels kill the process reading them: the actor dies while writing its batch."""

    @property
    def image(self):
        os.kill(os.getpid(), signal.SIGKILL)

    @image.setter
    def image(self, value):
        self._image = value


class _KillOnce:
    """An Anonymizer that, the first time any actor runs a batch of two or more images, is SIGKILLed
    after the batch's first output and manifest record were written (a marker file says it happened)."""

    def __init__(self, inner: Anonymizer, marker: Path):
        self.inner, self.marker = inner, marker

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, images, **kwargs):
        results = self.inner(images, **kwargs)
        if len(results) > 1:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return results
            victim = results[1]
            results[1] = _Bomb(*[getattr(victim, f.name) for f in dataclasses.fields(victim)])
        return results


def _kill_once_factory(config: RunConfig, marker: Path) -> _KillOnce:
    return _KillOnce(Anonymizer.from_preset(config=config), marker)


@needs_ray
def test_an_actor_killed_mid_batch_loses_nothing_and_the_run_equals_the_single_process_one(
        ray_local, sample_images, tmp_path, monkeypatch):
    """tiny preset, batches of 2, a bad input in the middle of the first batch; the first actor to run
    a batch of two dies (SIGKILL) after writing that batch's first output and record; Ray retries it."""
    inputs = _photos(tmp_path / "in", sample_images, bad_at=0)
    config = _config("tiny", batch_size=2, steps=2, removal_steps=2)
    single = _single(inputs, tmp_path / "single", config)
    marker, out = tmp_path / "killed", tmp_path / "ray"
    records: list[str] = []  # every shard line before the merge: the killed attempt's one is there too

    def merge(folder, manifest, state):
        records.extend(r["public"]["input"] for f in folder.glob("*.jsonl") for r in _Shard(f).records())
        return real_merge(folder, manifest, state)

    monkeypatch.setattr(distributed, "merge_shards", merge)
    summary = _distributed(inputs, out, config, factory=functools.partial(_kill_once_factory, config, marker),
                           actors=2, actor_cpus=0.75)
    assert marker.exists(), "no actor was killed"
    assert len(records) == len(set(records)) + 1  # the first input of the killed batch, recorded twice
    assert (summary.ok, summary.failed) == (single.ok, single.failed) == (len(sample_images) + 1, 1)
    assert [e.replace(str(out), "") for e in summary.errors] == [
        e.replace(str(tmp_path / "single"), "") for e in single.errors]
    outputs = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "manifest.jsonl")
    assert outputs == sorted(p.name for p in inputs.iterdir() if "-b" not in p.name)  # one each, no temporaries
    assert sorted(r["input"] for r in _lines(out / "manifest.jsonl")) == sorted(p.name for p in inputs.iterdir())
    _assert_same_run(tmp_path / "single", out)  # one line per input, the same lines, the same bytes


def _alive_actors(ray) -> int:
    """The pool's actors still alive (Ray Data's own stats actor outlives every job)."""
    from ray._private import state

    return sum(1 for a in state.actors().values() if "_AnonymizeActor" in a.get("ActorClassName", "")
               and a.get("State") in ("ALIVE", "RESTARTING", "PENDING_CREATION", "DEPENDENCIES_UNREADY"))


INPUTS = 7


@needs_ray
def test_resume_after_the_whole_job_was_killed_skips_exactly_what_was_done(ray_local, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(INPUTS):  # no people: lite only detects, so each input takes a moment
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(inputs / f"{i:02d}.png")
    out = tmp_path / "out"
    (tmp_path / "run.toml").write_text('verify_identity = "off"\n')
    args = ["anonymize", str(inputs), "-o", str(out), "--preset", "lite", "--batch-size", "1", "-q",
            "--config", str(tmp_path / "run.toml"), "--ray", ray_local.get_runtime_context().gcs_address,
            "--ray-actors", "1"]
    shards = shard_folder(out, None, False)
    job = subprocess.Popen([sys.executable, "-m", "refsd_trt.cli", *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    # Ray's start, the actor's and lite's first batch took over 90 s on this 2-core machine with a
    # full-size model run beside the suite; the loop ends as soon as two inputs are done.
    deadline, done = time.monotonic() + 300, 0
    while time.monotonic() < deadline and job.poll() is None:
        done = sum(len(p.read_bytes().splitlines()) for p in shards.glob("*.jsonl")) if shards.is_dir() else 0
        if done >= 2:
            break
        time.sleep(0.05)
    assert job.poll() is None, job.stderr.read().decode()[-2000:]
    assert done >= 2, "the job finished fewer than 2 inputs in 300 s"
    job.send_signal(signal.SIGKILL)  # the driver dies: Ray ends its actors, the shards stay
    job.wait()
    job.stderr.close()
    deadline = time.monotonic() + 30
    while _alive_actors(ray_local) and time.monotonic() < deadline:
        time.sleep(0.2)
    finished = {json.loads(line)["public"]["input"] for p in shards.glob("*.jsonl")
                for line in p.read_bytes().splitlines() if line.strip().endswith(b"}")}
    assert 2 <= len(finished) < INPUTS
    before = {name: (out / name).stat().st_mtime_ns for name in finished}
    assert main(args + ["--resume"]) == 0
    assert {name: (out / name).stat().st_mtime_ns for name in finished} == before  # not redone
    published = [r["input"] for r in _lines(out / "manifest.jsonl")]
    assert sorted(published) == sorted(p.name for p in inputs.iterdir())  # one line each over both runs
    assert sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "manifest.jsonl") == sorted(published)
    assert len(ResumeState(out / ".refsd-trt" / "state.jsonl").done_inputs()) == INPUTS


def test_merge_keeps_the_latest_attempt_once_and_can_be_repeated(tmp_path):
    folder = tmp_path / "shards"

    def line(key, name, at):
        public = {"input": name, "output": name, "status": "ok", "written_at": at}
        private = {"input": f"/abs/{name}", "output": f"/abs/out/{name}", "status": "ok", "input_sha256": "0",
                   "written_at": at}
        return {"key": key, "public": public, "private": private}

    _Shard(folder / "a.jsonl").append(line([1, 0], "b.png", "2026-01-01T00:00:01"))  # attempt 1, then killed
    _Shard(folder / "b.jsonl").append(line([0, 0], "a.png", "2026-01-01T00:00:00"))
    _Shard(folder / "b.jsonl").append(line([1, 0], "b.png", "2026-01-01T00:00:02"))  # the retry
    _Shard(folder / "b.jsonl").append(line([1, 1], "c.png", "2026-01-01T00:00:03"))
    manifest, state = Manifest(tmp_path / "manifest.jsonl"), ResumeState(tmp_path / "state.jsonl")
    manifest.append(line([1, 1], "c.png", "2026-01-01T00:00:03")["public"])  # a merge interrupted after this line
    assert merge_shards(folder, manifest, state) == 3
    assert [(r["input"], r["written_at"]) for r in manifest.records()] == [
        ("c.png", "2026-01-01T00:00:03"), ("a.png", "2026-01-01T00:00:00"), ("b.png", "2026-01-01T00:00:02")]
    assert [r["input"] for r in state.records()] == ["/abs/a.png", "/abs/b.png", "/abs/c.png"]
    assert not folder.exists() and merge_shards(folder, manifest, state) == 0


def test_a_table_of_paths_mirrors_their_common_folder(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / "data" / sub).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "data" / sub / "same.png")
    (tmp_path / "list.csv").write_text("path\ndata/x/same.png\ndata/y/same.png\nmissing.png\ns3://b/k.png\n")
    found = read_input_table(tmp_path / "list.csv")
    assert [i.relative.as_posix() for i in found.items] == ["x/same.png", "y/same.png"]
    assert [e.path.name for e in found.errors] == ["missing.png", "k.png"]
    (tmp_path / "list.txt").write_text("# inputs\n" + str(tmp_path / "data/x/same.png") + "\n")
    assert [i.relative.as_posix() for i in read_input_table(tmp_path / "list.txt").items] == ["same.png"]


def test_ray_without_the_extra_is_one_line_naming_it(monkeypatch, tmp_path, capsys):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["anonymize", str(tmp_path), "-o", str(tmp_path / "out"), "--preset", "tiny", "--ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {MISSING_RAY}"] and "refsd-trt[distributed]" in err[0]
