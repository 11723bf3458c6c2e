"""Scale out on Ray Data: anonymize a data set across many GPUs and machines, resumable, nothing lost.

    from refsd_trt.distributed import RayOptions, anonymize_dataset
    summary = anonymize_dataset(["photos/"], "out/", preset="lite", options=RayOptions(actors=2))

or ``refsd-trt anonymize photos/ -o out/ --ray [ADDRESS]``. The run is the single-process run
(``refsd_trt.runner.Runner``) with its image batches handed to Ray Data:

- The driver discovers the inputs exactly as the single-process run does (files, folders, globs; or
  a file list or table of paths, ``read_input_table``), applies ``--resume``'s rules, names every
  input (relative name, output path) and cuts the images into the single-process run's batches of
  ``batch_size`` (so every batch, and so every output, is the same as there).
- One row per batch flows through a Ray Data pipeline: ``map`` decodes the batch's images on CPU
  tasks (``decode_tasks`` at a time, ``decode_cpus`` each), then ``map_batches`` with a class UDF
  runs them on an actor pool (``actors`` actors; ``num_gpus=1`` each for the GPU presets, CPU actors
  of ``actor_cpus`` for ``lite``/``tiny``). Each actor builds its ``Anonymizer`` once, anonymizes a
  batch with the single-process run's own code, writes the outputs atomically and appends each
  input's published and private records as one line to its own shard file; it returns a short
  report (counts, error lines) to the driver.
- At the end the driver merges the shards into ``OUT/manifest.jsonl`` and the private resume state,
  in the single-process run's order, one line per input, and removes them. Shards are kept with
  the private state (``OUT/.refsd-trt/state.jsonl.shards/``, or beside ``--state``), or in the
  hidden ``OUT/.refsd-trt-shards/`` with ``--publish`` (public records only).

Nothing lost, nothing twice: Ray restarts a killed actor and retries its batch (``max_restarts`` and
``max_task_retries`` are unlimited for Ray Data's actor pools); the retry rewrites the same outputs
(atomically, the same bytes) and the merge keeps one line per input. If the whole job dies, the
shards stay on disk: the next run merges them first, so ``--resume`` skips exactly what was
finished (same rules as the single-process ``--resume``) and redoes the rest. Temporaries of killed
writers are removed at the start and end of a run.

Back-pressure: Ray Data streams; each actor holds at most ``tasks_per_actor`` batches (one running,
the rest queued), the decode stage at most ``decode_tasks`` batches being decoded, and the object
store bounds what waits between the two. Memory per actor is one batch, as in the single-process run.

Videos are not distributed: they run in the driver's process after the images (one line says so).
A cluster needs ``OUT`` (and the inputs, and ``--state``) on a file system every node mounts at
the same path; the driver makes every path absolute before handing it to Ray.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pickle
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from refsd_trt.api import Anonymizer
from refsd_trt.io import Discovery, InputError, InputItem, ReadLimits, clean_stale_temps, read_image
from refsd_trt.io.errors import InputErrorKind
from refsd_trt.io.formats import media_kind
from refsd_trt.io.image_read import DEFAULT_LIMITS
from refsd_trt.io.manifest import Manifest, ResumeState, default_state_path
from refsd_trt.runner import Runner, RunSummary, SetupError, _Names

log = logging.getLogger(__name__)

EXTRA = "distributed"
MISSING_RAY = f"--ray needs Ray Data: pip install 'refsd-trt[{EXTRA}]' (or pip install 'ray[data]')"
PUBLISH_SHARDS = ".refsd-trt-shards"  # hidden: input discovery never enters it
CPU_PRESETS = frozenset({"lite", "tiny"})


def ray_available() -> bool:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class RayOptions:
    """The knobs of a distributed run (None: the default named here).

    ``address``: the Ray cluster (``auto``, ``ray://host:10001``, ``host:6379``); None starts a local
    instance (or uses the one this process already started).
    ``actors``: Anonymizers in the pool. Default: one per GPU in the cluster for the GPU presets;
    for CPU actors (``lite``, ``tiny``, ``device = cpu``, or a cluster without GPUs), the cluster's
    CPUs less one, divided by ``actor_cpus`` (at least 1).
    ``actor_cpus``: CPUs each actor reserves (default 1; a GPU actor also takes ``num_gpus=1``).
    ``decode_tasks``: image batches decoded at once, on CPU tasks (default: twice ``actors``).
    ``decode_cpus``: CPUs each decode task reserves (default 0.25: decoding is short next to a model).
    ``tasks_per_actor``: batches queued per actor, the running one included (default 2): the
    actor's next batch is already decoded when it finishes one; more only costs memory.
    ``threads``: torch's intra-op threads in each actor (default: Ray's choice, the actor's CPUs
    rounded, at least 1). Outputs are byte-equal to a single-process run with the same thread count:
    the ``lite`` preset's floats depend on it, and ``backend = auto`` records its engine timings per
    thread count.
    ``num_cpus``, ``object_store_memory``: for a local instance only (default: Ray's).
    The batch size is the run's ``batch_size`` (as in the single-process run, so outputs are equal).
    """

    address: str | None = None
    actors: int | None = None
    actor_cpus: float = 1.0
    decode_tasks: int | None = None
    decode_cpus: float = 0.25
    tasks_per_actor: int = 2
    threads: int | None = None
    num_cpus: int | None = None
    object_store_memory: int | None = None


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _remote_names(names: _Names) -> _Names:
    """The same input, every path absolute: actors run elsewhere, in another working folder."""
    return dataclasses.replace(
        names, path=_absolute(names.path), target=None if names.target is None else _absolute(names.target),
        roots=tuple(_absolute(r) for r in names.roots))


# --- inputs from a list or a table -------------------------------------------------------------------

def read_input_table(table: str | Path, column: str = "path", root: str | Path | None = None) -> Discovery:
    """Inputs listed in a file: ``.txt``/``.lst`` (one path a line; ``#`` comments), ``.csv``,
    ``.parquet`` or ``.jsonl`` (the ``column`` of paths, via pyarrow). Relative paths are taken
    from the table's folder. Outputs mirror each path below ``root`` (default: the listed files'
    common folder), so files of the same name in different folders do not clash. A listed path
    that is missing, not a file or of another type is reported in ``Discovery.errors``. Only local
    paths here (a URI with a scheme is refused, one line each)."""
    table = Path(table)
    suffix = table.suffix.lower()
    if suffix in (".txt", ".lst", ""):
        lines = table.read_text(encoding="utf-8").splitlines()
        values = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    else:
        import pyarrow.csv
        import pyarrow.json
        import pyarrow.parquet

        readers = {".csv": pyarrow.csv.read_csv, ".parquet": pyarrow.parquet.read_table,
                   ".jsonl": pyarrow.json.read_json, ".json": pyarrow.json.read_json}
        if suffix not in readers:
            raise ValueError(f"{table}: input tables are .txt, .lst, .csv, .parquet or .jsonl")
        data = readers[suffix](str(table))
        if column not in data.column_names:
            raise ValueError(f"{table}: no column {column!r} (columns: {', '.join(data.column_names)})")
        values = [str(v) for v in data.column(column).to_pylist() if v is not None and str(v).strip()]
    discovery = Discovery()
    paths: list[Path] = []
    for value in values:
        if "://" in value and not value.startswith("file://"):
            discovery.errors.append(InputError(value, InputErrorKind.UNSUPPORTED,
                                               "only local paths are read (file system URIs: not here)"))
            continue
        path = Path(value.removeprefix("file://"))
        path = path if path.is_absolute() else table.parent / path
        if not path.exists():
            discovery.errors.append(InputError(path, InputErrorKind.MISSING, "no such file or folder"))
        elif not path.is_file():
            discovery.errors.append(InputError(path, InputErrorKind.NOT_A_FILE, "not a file"))
        elif media_kind(path) is None:
            discovery.errors.append(InputError(path, InputErrorKind.UNSUPPORTED,
                                               f"unsupported file type '{path.suffix}'"))
        else:
            paths.append(path)
    base = Path(root) if root is not None else (
        Path(os.path.commonpath([str(_absolute(p).parent) for p in paths])) if paths else Path("."))
    seen: set[Path] = set()
    for path in paths:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        try:
            item_root = base if _absolute(path).is_relative_to(_absolute(base)) else path.parent
        except ValueError:
            item_root = path.parent
        discovery.items.append(InputItem(_absolute(path), _absolute(item_root), media_kind(path)))
    return discovery


# --- shards --------------------------------------------------------------------------------------------

class _Shard(ResumeState):
    """One actor's records: one line per input, ``{"key": [batch, seq], "public": ..., "private": ...}``
    (mode 0600, like the private state: the private half names absolute paths and hashes)."""

    required = ("key", "public")

    def _check(self, record: Mapping[str, Any]) -> None:
        missing = [key for key in self.required if key not in record]
        if missing:
            raise ValueError(f"shard record lacks {', '.join(missing)}")


def shard_folder(out_dir: str | Path, state: str | Path | None, publish: bool) -> Path:
    """Where a run's shards live: beside the private state (its folder is private), or, with
    ``publish``, in a hidden folder of ``OUT`` (public records only), removed once merged."""
    if publish:
        return Path(out_dir) / PUBLISH_SHARDS
    state_path = Path(state) if state is not None else default_state_path(out_dir)
    return state_path.with_name(state_path.name + ".shards")


def merge_shards(folder: Path, manifest: Manifest, state: ResumeState | None) -> int:
    """Merge every shard in ``folder`` into the manifest (and the private state): per input the
    latest attempt's records (a batch Ray retried after a killed actor wrote some of its inputs has
    two), in the single-process run's order; records already merged (a merge a crash interrupted)
    are not added again. Removes the shards. Returns how many inputs were merged."""
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        return 0
    latest: dict[str, dict[str, Any]] = {}
    for file in files:
        for record in _Shard(file).records():
            name = record["public"]["input"]
            if name not in latest or record["public"]["written_at"] >= latest[name]["public"]["written_at"]:
                latest[name] = record
    ordered = sorted(latest.values(), key=lambda r: tuple(r["key"]))
    merged = {(r["input"], r.get("written_at")) for r in manifest.records()}
    manifest.extend([r["public"] for r in ordered
                     if (r["public"]["input"], r["public"]["written_at"]) not in merged])
    if state is not None:
        merged = {(r["input"], r.get("written_at")) for r in state.records()}
        state.extend([r["private"] for r in ordered if r.get("private") is not None
                      and (r["private"]["input"], r["private"]["written_at"]) not in merged])
    for file in files:
        file.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
    return len(ordered)


# --- what runs on Ray -------------------------------------------------------------------------------------

def _decode(row: dict[str, Any], limits: ReadLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """A CPU task: decode one batch's images (a bad one keeps its error line, as the single-process run's)."""
    entries = pickle.loads(row["payload"])
    decoded = []
    for names in entries:
        try:
            decoded.append((names, read_image(names.path, limits), None))
        except InputError as exc:
            decoded.append((names, None, str(exc)))
    return {"batch": row["batch"], "payload": pickle.dumps(decoded, protocol=pickle.HIGHEST_PROTOCOL)}


class _ShardRunner(Runner):
    """The single-process run's batch code, recording into this actor's shard instead of the logs."""

    def __init__(self, factory: Callable[[], Anonymizer], out_dir: Path, batch_size: int, shards: Path,
                 publish: bool) -> None:
        super().__init__(factory, out_dir, batch_size, progress=False, publish=publish)
        self.shard = _Shard(shards / f"{uuid.uuid4().hex}.jsonl", own_folder=not publish)
        self.lines: list[str] = []
        self._batch, self._seq = 0, 0

    def say(self, line: str) -> None:
        self.lines.append(line)

    def _record(self, public: dict[str, Any], private: dict[str, Any]) -> None:
        now = datetime.now(timezone.utc).isoformat()
        public = {**public, "written_at": now}
        private = None if self.publish else {**private, "written_at": now}
        self.shard.append({"key": [self._batch, self._seq], "public": public, "private": private})
        self._seq += 1

    def batch(self, number: int, decoded: list) -> dict[str, Any]:
        """One batch, in the single-process run's order: unreadable inputs first, then the rest."""
        self.summary, self.lines, self._batch, self._seq = RunSummary(), [], number, 0
        setup_error = None
        try:
            loaded = []
            for names, image, error in decoded:
                if error is not None:
                    self._fail(names, None, error)
                else:
                    loaded.append((image, names))
            self._anonymize_loaded(loaded)
        except SetupError as exc:
            setup_error = str(exc)
        s = self.summary
        anonymizes = self._anonymizer.preset.anonymizes if self._anonymizer is not None else True
        return {"batch": number, "anonymizes": anonymizes, "inputs": len(decoded), "ok": s.ok,
                "failed": s.failed, "people": s.people, "fallbacks": s.fallbacks,
                "stage_seconds": dict(s.stage_seconds), "errors": s.errors, "lines": self.lines,
                "setup_error": setup_error}


class _AnonymizeActor:
    """Ray Data's class UDF: the Anonymizer is built once per actor (on its first batch)."""

    def __init__(self, factory: Callable[[], Anonymizer], out_dir: str, batch_size: int, shards: str,
                 publish: bool, threads: int | None = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.runner = _ShardRunner(factory, Path(out_dir), batch_size, Path(shards), publish)

    def __call__(self, rows: dict[str, Any]) -> dict[str, Any]:
        reports = [self.runner.batch(int(number), pickle.loads(payload))
                   for number, payload in zip(rows["batch"], rows["payload"])]
        return {"report": [json.dumps(r) for r in reports]}


# --- the driver -----------------------------------------------------------------------------------------

def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise SetupError(MISSING_RAY) from exc
    return ray


class DistributedRunner(Runner):
    """``Runner`` with its image batches run on a Ray Data actor pool (see the module's docstring)."""

    def __init__(self, anonymizer_factory: Callable[[], Anonymizer], out_dir: str | Path, batch_size: int,
                 options: RayOptions | None = None, preset: str | None = None, device: str = "auto",
                 resume: bool = False, limits: ReadLimits = DEFAULT_LIMITS, progress: bool = True,
                 log: TextIO | None = None, config: Mapping[str, Any] | None = None,
                 state: str | Path | None = None, publish: bool = False, table: Discovery | None = None):
        """``preset``, ``device``: decide GPU or CPU actors (``lite``/``tiny`` or ``cpu``: CPU actors).
        ``table``: inputs read by ``read_input_table`` (then ``run`` takes no arguments)."""
        super().__init__(anonymizer_factory, out_dir, batch_size, resume=resume, limits=limits,
                         progress=progress, log=log, config=config, state=state, publish=publish)
        self.options, self.preset, self.device, self.table = options or RayOptions(), preset, device, table
        self.shards = shard_folder(self.out_dir, state, publish)
        self._batches: list[list[tuple[InputItem, _Names]]] = []
        self._videos: list[tuple[InputItem, _Names]] = []
        self._given: dict[str, str] = {}  # absolute spelling -> as given, for console lines
        self.report_times: list[tuple[float, int]] = []  # (perf_counter, inputs) per batch reported

    # Runner's hooks: the discovery, resume and naming rules stay the single-process run's own.
    def _discover(self, args: Sequence[str]) -> Discovery:
        return self.table if self.table is not None else super()._discover(args)

    def _open_logs(self) -> None:
        super()._open_logs()
        recovered = merge_shards(self.shards, self._manifest, self._state)
        if recovered:
            self.say(f"note: merged {recovered} input(s) an interrupted distributed run had finished")

    def _image_batch(self, batch: list[tuple[InputItem, _Names]]) -> None:
        self._batches.append(batch)

    def _video(self, item: InputItem, names: _Names) -> None:
        self._videos.append((item, names))

    def run(self, args: Sequence[str] = ()) -> RunSummary:
        start = time.perf_counter()
        progress, self.progress = self.progress, False
        try:
            super().run(args)  # discovery, argument errors, skipped files, resume: batches are collected
        finally:
            self.progress = progress
        if self._batches:
            self._run_on_ray()
        clean_stale_temps(self.out_dir)  # a killed actor's temporaries (its process is gone)
        if self._videos:
            self.say(f"note: {len(self._videos)} video(s) run in this process, not on Ray "
                     "(the distributed run takes images)")
            for item, names in self._videos:
                Runner._video(self, item, names)
        return self._finish(start)

    def _actor_resources(self, ray) -> tuple[int, dict[str, float]]:
        opts = self.options
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        gpu = self.preset not in CPU_PRESETS and self.device != "cpu" and gpus > 0
        if gpu:
            return opts.actors or gpus, {"num_gpus": 1, "num_cpus": opts.actor_cpus}
        cpus = float(resources.get("CPU", 1))
        actors = opts.actors or max(1, int((cpus - 1) // opts.actor_cpus))
        return actors, {"num_cpus": opts.actor_cpus}

    def _connect(self):
        ray = _import_ray()
        started = False
        if not ray.is_initialized():
            opts = self.options
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if opts.address is None:
                kwargs.update(num_cpus=opts.num_cpus, object_store_memory=opts.object_store_memory)
            ray.init(address=opts.address, **kwargs)
            started = True
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray").setLevel(logging.WARNING)
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes on progress bars and concurrency
        return ray, started

    def _run_on_ray(self) -> None:
        ray, started = self._connect()
        try:
            self._stream(ray)
        finally:
            merge_shards(self.shards, self._manifest, self._state)
            if started:
                ray.shutdown()

    def _stream(self, ray) -> None:
        opts = self.options
        rows = []
        for number, batch in enumerate(self._batches):
            remote = [_remote_names(names) for _item, names in batch]
            for names, remote_names in zip((n for _i, n in batch), remote):
                self._given[str(remote_names.path)] = str(names.path)
            rows.append({"batch": number, "payload": pickle.dumps(remote, protocol=pickle.HIGHEST_PROTOCOL)})
        actors, resources = self._actor_resources(ray)
        total = sum(len(b) for b in self._batches)
        if self._state is not None:
            self._state._prepare_folder()  # the private folder (mode 0700) the shards go into
        self.shards.mkdir(parents=True, exist_ok=True, mode=0o700)
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))  # one batch a block: balanced actors
        ds = ds.map(functools.partial(_decode, limits=self.limits), num_cpus=opts.decode_cpus,
                    compute=ray.data.TaskPoolStrategy(size=min(len(rows), opts.decode_tasks or 2 * actors)))
        ds = ds.map_batches(
            _AnonymizeActor, batch_size=1, batch_format="numpy",
            fn_constructor_args=(self._factory, str(_absolute(self.out_dir)), self.batch_size,
                                 str(_absolute(self.shards)), self.publish, opts.threads),
            compute=ray.data.ActorPoolStrategy(size=actors,
                                               max_tasks_in_flight_per_actor=opts.tasks_per_actor),
            **resources)
        seen: set[int] = set()
        anonymizes = True
        bar = tqdm(total=total, unit="input", disable=not self.progress, file=self.log, dynamic_ncols=True)
        with bar:
            for row in ds.iter_rows():
                report = json.loads(row["report"])
                if report["batch"] in seen:  # never expected; a retried batch reports once
                    continue
                seen.add(report["batch"])
                for line in report["lines"]:
                    self.say(self._as_given(line))
                if report["setup_error"]:
                    raise SetupError(report["setup_error"])
                anonymizes = anonymizes and report["anonymizes"]
                s = self.summary
                s.ok += report["ok"]
                s.failed += report["failed"]
                s.people += report["people"]
                s.fallbacks += report["fallbacks"]
                s.stage_seconds.update(report["stage_seconds"])
                s.errors += [self._as_given(e) for e in report["errors"]]
                self.report_times.append((time.perf_counter(), report["inputs"]))
                bar.update(report["inputs"])
                bar.set_postfix(people=s.people, failed=s.failed)
        if not anonymizes:
            self.say("note: the tiny preset runs random models; its outputs are NOT anonymized images")

    def _as_given(self, line: str) -> str:
        """A console line naming inputs as they were given (actors name them by absolute path)."""
        for absolute in sorted((a for a in self._given if a in line), key=len, reverse=True):
            line = line.replace(absolute, self._given[absolute])
        return line


def anonymize_dataset(inputs: Sequence[str] = (), out_dir: str | Path = "out", preset: str | None = None,
                      options: RayOptions | None = None, table: str | Path | None = None,
                      column: str = "path", root: str | Path | None = None, resume: bool = False,
                      state: str | Path | None = None, publish: bool = False, progress: bool = False,
                      config=None,
                      anonymizer_factory: Callable[[], Anonymizer] | None = None, **overrides) -> RunSummary:
    """The Python entry point: ``inputs`` (files, folders, globs) or ``table`` (``read_input_table``)
    anonymized on Ray into ``out_dir``. ``config`` (a ``RunConfig``) and ``overrides`` (its fields)
    set the run as ``refsd-trt anonymize``'s flags do; ``anonymizer_factory`` replaces the default
    ``Anonymizer.from_preset(config=...)`` (it must pickle: it is sent to every actor)."""
    from refsd_trt.config import RunConfig
    from refsd_trt.presets import PRESETS

    config = (config or RunConfig()).merged({"preset": preset, **overrides})
    if config.preset is not None:
        config = config.resolved(PRESETS[config.preset])
    factory = anonymizer_factory or functools.partial(Anonymizer.from_preset, config=config)
    runner = DistributedRunner(factory, out_dir, config.batch_size, options=options, preset=config.preset,
                               device=config.device, resume=resume,
                               limits=ReadLimits(max_pixels=config.max_pixels),
                               progress=progress, config=config.to_dict(), state=state, publish=publish,
                               table=read_input_table(table, column, root) if table is not None else None)
    return runner.run(inputs)


__all__ = ["EXTRA", "MISSING_RAY", "DistributedRunner", "RayOptions", "anonymize_dataset", "merge_shards",
           "ray_available", "read_input_table", "shard_folder"]
