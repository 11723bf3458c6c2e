"""load_engine: every backend behind one call, auto selection measured once and recorded, CLI."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from refsd_trt.engine import factory, host_memory, timing
from refsd_trt.engine.factory import choose_backend, load_engine
from refsd_trt.engine.micro_batch import MicroBatched
from refsd_trt.engine.onnxruntime_backend import OrtEngine
from refsd_trt.engine.torch_backend import TorchEngine
from refsd_trt.export.formats import export
from refsd_trt.export.specs import AxisRange, ModelSpec, TensorSpec


@pytest.fixture
def pipeline(zoo):
    return zoo("sd-inpaint")


def test_torch_and_onnxruntime_agree_through_one_entry_point(pipeline, tmp_path):
    eager = load_engine(pipeline, "vae_encoder", backend="torch")
    ort = load_engine(pipeline, "vae_encoder", backend="onnxruntime", root=tmp_path, threads=2)
    assert isinstance(eager, TorchEngine) and isinstance(ort, OrtEngine)
    feeds = eager.spec.example_inputs(batch=1, height=256, width=256)
    got, want = ort.run(feeds), eager.run(feeds)
    torch.testing.assert_close(got["latent_parameters"], want["latent_parameters"], atol=1e-4, rtol=1e-4)


def test_fp16_loads_the_fp16_artifact(pipeline, tmp_path):
    engine = load_engine(pipeline, "text_encoder", backend="onnxruntime", precision="float16", root=tmp_path)
    assert engine.precision == "float16"
    out = engine.run(engine.spec.example_inputs("float16", batch=2, tokens=77))
    assert out["pooled"].dtype == torch.float16


def test_artifact_folder_is_a_source(pipeline, tmp_path):
    artifact = export(pipeline, "text_encoder", "onnx-fp16", root=tmp_path)
    engine = load_engine(artifact.folder, backend="onnxruntime", root=tmp_path)
    assert engine.precision == "float16" and engine.spec.name == "text_encoder"


def test_auto_measures_once_records_the_winner_and_reuses_it(pipeline, tmp_path, monkeypatch):
    messages = []
    engine = load_engine(pipeline, "text_encoder", backend="auto", root=tmp_path, progress=messages.append)
    manifest = export(pipeline, "text_encoder", "onnx", root=tmp_path).manifest
    (record,) = manifest["backends"][timing.device_key(torch.device("cpu"))].values()
    assert set(record["timings_ms"]) == {"torch", "onnxruntime"} and record["winner"] in record["timings_ms"]
    assert engine.backend.startswith(record["winner"])
    assert any("->" in m for m in messages)

    def no_timing(*args, **kwargs):
        raise AssertionError("auto timed again although a winner is recorded")

    monkeypatch.setattr(timing, "median_ms", no_timing)
    again = choose_backend(pipeline, "text_encoder", torch.device("cpu"), "float32", root=tmp_path)
    assert again == record["winner"]


def test_auto_times_at_the_asked_shape_kept_inside_the_profile(pipeline, tmp_path, monkeypatch):
    shapes = []
    real = timing.median_ms

    def record(engine, feeds, **kwargs):
        shapes.append(tuple(feeds["input_ids"].shape))
        return real(engine, feeds, **kwargs)

    monkeypatch.setattr(timing, "median_ms", record)
    choose_backend(pipeline, "text_encoder", torch.device("cpu"), "float32", axes={"batch": 3}, root=tmp_path)
    choose_backend(pipeline, "text_encoder", torch.device("cpu"), "float32", axes={"batch": 99}, root=tmp_path)
    assert shapes == [(3, 77)] * 2 + [(16, 77)] * 2  # torch and onnxruntime each; 99 clamps to the max, 16
    records = export(pipeline, "text_encoder", "onnx", root=tmp_path).manifest["backends"]
    assert sorted(records[timing.device_key(torch.device("cpu"))]) == ["batch=16,tokens=77", "batch=3,tokens=77"]


def test_auto_skips_a_backend_that_fails(pipeline, tmp_path, monkeypatch):
    from refsd_trt.engine import factory

    real = factory._build

    def torch_breaks(backend, *args, **kwargs):
        if backend == "torch":
            raise RuntimeError("no kernel for this op")
        return real(backend, *args, **kwargs)

    monkeypatch.setattr(factory, "_build", torch_breaks)
    assert choose_backend(pipeline, "text_encoder", torch.device("cpu"), "float32", root=tmp_path) == "onnxruntime"


def test_micro_batched_equals_the_whole_batch_and_writes_into_given_outputs(pipeline):
    whole = load_engine(pipeline, "vae_decoder", backend="torch")
    split = MicroBatched(whole, 2)
    feeds = whole.spec.example_inputs(batch=5, height=256, width=256)
    want = whole.run(feeds)["images"].clone()
    target = torch.full_like(want, float("nan"))
    got = split.run(feeds, {"images": target})["images"]
    assert got.data_ptr() == target.data_ptr()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)  # batch-size-dependent conv kernels
    torch.testing.assert_close(split.run(feeds)["images"], want, atol=1e-4, rtol=0)  # into its own buffers
    assert split.backend == "torch (micro-batch 2)"


def test_auto_splits_a_batch_only_where_one_at_a_time_measured_faster(pipeline, tmp_path, monkeypatch):
    per_call_ms, calls = {1: 20.0, 4: 100.0}, []  # 4 x 20 ms one at a time beats 100 ms for the batch of 4
    monkeypatch.setattr(timing, "median_ms", lambda engine, feeds, **_: (
        calls.append(feeds["latents"].shape[0]), per_call_ms[feeds["latents"].shape[0]])[1])
    engine = load_engine(pipeline, "vae_decoder", backend="auto", axes={"batch": 4}, root=tmp_path)
    assert isinstance(engine, MicroBatched) and engine.size == 1
    assert calls == [4, 4, 1]  # each backend once; the whole batch's time is then the winner's, not re-timed
    record = export(pipeline, "vae_decoder", "onnx", root=tmp_path).manifest["backends"][
        timing.device_key(torch.device("cpu"))]["batch=4,height=256,latent_height=32,latent_width=32,width=256"]
    assert record["micro_batch"] == 1 and record["per_item_ms"] == {"whole_batch": 25.0, "one_at_a_time": 20.0}

    per_call_ms[1] = 24.0  # 96 ms: not 5 % better than 100, but the recorded decision stands
    again = load_engine(pipeline, "vae_decoder", backend="auto", axes={"batch": 4}, root=tmp_path)
    assert isinstance(again, MicroBatched)
    fresh = factory.micro_batched(again.inner, pipeline, "vae_decoder", {"batch": 4}, root=tmp_path, remeasure=True)
    assert fresh is again.inner  # remeasured: the batch stays whole


def test_micro_batching_needs_every_tensor_to_lead_with_the_batch():
    spec = ModelSpec("odd", (TensorSpec("x", "float", ("batch", 3)), TensorSpec("table", "float", (7,))),
                     (TensorSpec("y", "float", ("batch", 3)),), {"batch": AxisRange(1, 2, 4)})
    inner = TorchEngine(spec, torch.nn.Identity())
    with pytest.raises(ValueError, match="lead with the batch axis"):
        MicroBatched(inner, 1)


def test_bad_arguments(pipeline, tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        load_engine(pipeline, "unet", backend="tvm")
    with pytest.raises(ValueError, match="precision must be one of"):
        load_engine(pipeline, "unet", precision="int8")
    with pytest.raises(ValueError, match="name the component"):
        load_engine(pipeline)


def _cli(*argv) -> int:
    from refsd_trt.export.cli import register

    parser = argparse.ArgumentParser(prog="refsd-trt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def test_cli_export_then_build(pipeline, tmp_path, capsys):
    assert _cli("export", pipeline, "-c", "text_encoder", "-f", "onnx", "--out", tmp_path) == 0
    printed = capsys.readouterr().out
    assert "text_encoder onnx: wrote" in printed and "manifest:" in printed
    manifest = next(tmp_path.glob("text_encoder-onnx-*/manifest.json"))
    assert json.loads(manifest.read_text())["validation"]["tolerance"] == 1e-4

    assert _cli("build", pipeline, "-c", "text_encoder", "--device", "cpu", "--precision", "fp32",
                "--shape", "batch=2,tokens=77", "--out", tmp_path) == 0
    assert "auto backend for text_encoder:" in capsys.readouterr().out
    assert "batch=2,tokens=77" in next(iter(json.loads(manifest.read_text())["backends"].values()))

    assert _cli("build", manifest.parent, "--backend", "onnxruntime", "--device", "cpu", "--out", tmp_path) == 0
    assert "onnxruntime-cpu ready" in capsys.readouterr().out


def test_cli_rejects_malformed_shapes(pipeline):
    with pytest.raises(SystemExit):
        _cli("build", pipeline, "-c", "unet", "--shape", "batch")
    with pytest.raises(SystemExit):
        _cli("export", pipeline, "-c", "unet", "--profile", "height=1024:512:256")


@pytest.mark.gpu
def test_auto_on_cuda_times_every_available_backend(zoo, tmp_path):
    from refsd_trt.engine.factory import available_backends

    ref = zoo("sdxl-vae-fp16-fix")
    engine = load_engine(ref, "vae_decoder", backend="auto", device="cuda", precision="float16", root=tmp_path)
    manifest = export(ref, "vae_decoder", "onnx-fp16", root=tmp_path).manifest
    (record,) = manifest["backends"][timing.device_key(torch.device("cuda"))].values()
    assert set(record["timings_ms"]) | set(record["errors"]) == set(available_backends(torch.device("cuda")))
    feeds = engine.spec.example_inputs("float16", "cuda", batch=1, height=256, width=256)
    assert engine.run(feeds)["images"].device.type == "cuda"


class _Clocked:
    """An engine whose every run advances a fake clock by ``seconds``."""

    device = torch.device("cpu")

    def __init__(self, clock: list[float], seconds: float):
        self.clock, self.seconds, self.runs = clock, seconds, 0

    def run(self, feeds):
        self.runs += 1
        self.clock[0] += self.seconds


@pytest.mark.parametrize(("seconds", "runs"), [(0.5, 4), (timing.LONG_CALL_S + 0.5, 2), (timing.VERY_LONG_CALL_S + 1, 1)])
def test_long_calls_are_timed_once_after_the_warm_up(monkeypatch, seconds, runs):
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    engine = _Clocked(clock, seconds)
    assert timing.median_ms(engine, {}) == pytest.approx(seconds * 1e3)
    assert engine.runs == runs  # one warm-up, then three timed runs, one, or none (the warm-up is timed)


@pytest.mark.parametrize(("torch_ms", "kept"), [(5.0, False), (20.0, True)])
def test_auto_never_holds_two_candidates_and_keeps_the_winner_only_if_last(pipeline, tmp_path, monkeypatch,
                                                                            torch_ms, kept):
    open_engines, most_open = [], [0]
    real_build = factory._build

    def build(backend, *args, **kwargs):
        engine = real_build(backend, *args, **kwargs)
        open_engines.append(engine)
        most_open[0] = max(most_open[0], len(open_engines))
        real_close = engine.close
        engine.close = lambda: (open_engines.remove(engine), real_close())
        return engine

    monkeypatch.setattr(factory, "_build", build)
    monkeypatch.setattr(timing, "median_ms", lambda engine, feeds, **_: torch_ms if engine.backend == "torch" else 10.0)
    engine = load_engine(pipeline, "text_encoder", backend="auto", root=tmp_path)
    assert most_open[0] == 1  # each candidate released before the next is built
    assert engine.backend.startswith("onnxruntime" if kept else "torch")
    # torch is timed first: as the winner it is built again; onnxruntime, timed last, is kept as it is
    assert len(open_engines) == 1 and open_engines[0] is engine


class _FakeMemory:
    """RSS as a fixed base plus what each open engine holds, by backend (real engines, tiny models)."""

    def __init__(self, monkeypatch, held: dict[str, int], base: int = 10**9):
        self.base, self.held, self.open, self.built = base, held, [], []
        real_build = factory._build

        def build(backend, *args, **kwargs):
            engine = real_build(backend, *args, **kwargs)
            self.open.append(backend)
            self.built.append(backend)
            real_close = engine.close
            engine.close = lambda: (self.open.remove(backend), real_close())
            return engine

        monkeypatch.setattr(factory, "_build", build)
        monkeypatch.setattr(host_memory, "rss_bytes", lambda: self.base + sum(self.held[b] for b in self.open))


def test_auto_runs_the_fastest_engine_that_fits_the_memory_budget(pipeline, tmp_path, monkeypatch):
    memory = _FakeMemory(monkeypatch, {"torch": 10**9, "onnxruntime": 3 * 10**9})
    monkeypatch.setattr(timing, "median_ms", lambda engine, feeds, **_: 20.0 if engine.backend == "torch" else 10.0)
    messages = []
    load = lambda budget: load_engine(pipeline, "text_encoder", backend="auto", root=tmp_path,
                                      memory_budget=budget, progress=messages.append)
    engine = load(memory.base + 2 * 10**9)  # 2 GB left: onnxruntime, twice as fast, holds 3 GB
    assert engine.backend == "torch"
    (record,) = export(pipeline, "text_encoder", "onnx", root=tmp_path).manifest["backends"][
        timing.device_key(torch.device("cpu"))].values()
    assert record["resident_bytes"] == {"torch": 10**9, "onnxruntime": 3 * 10**9}
    assert record["winner"] == "onnxruntime"  # the fastest; the budget decides at each load
    assert any("onnxruntime is fastest but holds 3.00 GB, 2.00 GB are left" in m for m in messages)
    engine.close()

    def no_timing(*args, **kwargs):
        raise AssertionError("auto timed again although timings are recorded")

    monkeypatch.setattr(timing, "median_ms", no_timing)
    assert load(memory.base + 4 * 10**9).backend.startswith("onnxruntime")  # room enough
    assert load(None).backend.startswith("onnxruntime")  # no budget: speed alone
    assert load(memory.base + 10**8).backend == "torch"  # nothing fits: the smallest
    # none fits, and the two are one size (the same weights measured 5 % apart): the faster of them
    same = {"timings_ms": {"torch": 20.0, "onnxruntime": 10.0}, "winner": "onnxruntime",
            "resident_bytes": {"torch": 10**9, "onnxruntime": int(1.05 * 10**9)}}
    assert factory._within(same, 10**8, "text_encoder", None) == "onnxruntime"


def test_auto_does_not_build_a_backend_whose_weights_exceed_what_is_left(pipeline, tmp_path, monkeypatch):
    memory = _FakeMemory(monkeypatch, {"torch": 0, "onnxruntime": 0})
    monkeypatch.setattr(timing, "median_ms", lambda engine, feeds, **_: 20.0 if engine.backend == "torch" else 10.0)
    weights = sum(p.stat().st_size for p in export(pipeline, "text_encoder", "onnx", root=tmp_path).folder.iterdir())
    engine = load_engine(pipeline, "text_encoder", backend="auto", root=tmp_path, memory_budget=memory.base + weights // 2)
    assert engine.backend == "torch" and memory.built == ["torch"]  # onnxruntime never built
    (record,) = export(pipeline, "text_encoder", "onnx", root=tmp_path).manifest["backends"][
        timing.device_key(torch.device("cpu"))].values()
    assert set(record["timings_ms"]) == {"torch"} and "exceed" in record["skipped"]["onnxruntime"]


def test_the_runs_memory_budget_reaches_auto_on_cpus_only(monkeypatch):
    from pathlib import Path

    from refsd_trt import methods
    from refsd_trt.cli import _run_config, build_parser

    config = _run_config(build_parser().parse_args(["anonymize", "in", "-o", "out", "--memory-budget", "12.5"]))
    asked = []
    monkeypatch.setattr(factory, "load_engine", lambda *args, **kwargs: asked.append(kwargs["memory_budget"]))
    for device in ("cpu", "cuda"):  # a GPU's engines live in device memory, not in the host budget
        methods._engine_factory(config, torch.device(device))(Path("model"), "text_encoder")
    assert asked == [12_500_000_000, None]
    assert host_memory.budget_bytes(None) == int(0.6 * host_memory.machine_bytes())
    assert 0 < host_memory.rss_bytes() < host_memory.machine_bytes()


def test_a_lone_candidate_is_built_however_little_memory_is_left(pipeline, tmp_path, monkeypatch):
    memory = _FakeMemory(monkeypatch, {"onnxruntime": 10**9})
    monkeypatch.setattr(factory, "available_backends", lambda device, precision: ["onnxruntime"])  # as for YOLO
    engine = load_engine(pipeline, "text_encoder", backend="auto", root=tmp_path, memory_budget=memory.base)
    assert engine.backend.startswith("onnxruntime") and memory.built == ["onnxruntime"]
