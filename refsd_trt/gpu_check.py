"""``refsd-trt doctor --gpu-check``: the GPU paths, layer by layer, on this machine.

An ordered list of checks, one line each (``OK``/``FAIL``/``SKIP``, what was checked or what broke);
it stops at the first broken layer, since everything after it stands on it. Without a GPU it says
so in one line. Each check is the GPU half of a decision the CPU test suite covers
(``tests/test_engine_gpu_rules.py``, ``tests/test_export_fp16.py``):

1. packaging: one onnxruntime module (onnxruntime-gpu alone), its CUDA major = torch's
2. torch on CUDA: a kernel runs on a non-default stream
3. onnxruntime's CUDA provider loads for real, on the engine's stream (no CPU fallback)
4. stream ordering: a delayed producer on torch's stream, then the engine (onnxruntime, TensorRT)
5. CuPy kernels compile and match torch
6. a tiny TensorRT build and run per component, against onnxruntime on the same feeds, with its
   activation memory for the shape run
7. the same plans against onnxruntime-CPU through polygraphy's comparator (its TensorRT and
   ONNX-Runtime runners on the same feeds), so a bad plan is caught before a pipeline runs it
8. CUDA graph capture vs eager, on the engine's own stream
9. bindings: a feed that is a row of a larger tensor (not 256-byte aligned) gives the same result
10. every backend against torch fp32 on the tiny zoo's VAE decoder
11. the gpu-marked tests (source checkouts only)
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from refsd_trt.io.errors import one_line


class Skip(Exception):
    """A check that does not apply here (a package not installed): reported, not a failure."""


def _torch():
    import torch

    return torch


def check_packaging() -> str:
    torch = _torch()
    installed = {}
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            installed[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    if len(installed) == 2:
        raise RuntimeError("onnxruntime and onnxruntime-gpu are both installed and ship the same module: "
                           "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError(f"onnxruntime {ort.__version__} has no CUDA provider: replace onnxruntime with "
                           "onnxruntime-gpu (README, Install)")
    ort_cuda, torch_cuda = getattr(ort, "cuda_version", "") or "", torch.version.cuda or ""
    if ort_cuda and torch_cuda and ort_cuda.split(".")[0] != torch_cuda.split(".")[0]:
        raise RuntimeError(f"onnxruntime-gpu is built for CUDA {ort_cuda}, torch for CUDA {torch_cuda}: "
                           "install the onnxruntime-gpu build of torch's CUDA major")
    return f"{', '.join(f'{k} {v}' for k, v in installed.items())}; CUDA {ort_cuda or '?'} (torch {torch_cuda})"


def check_torch() -> str:
    torch = _torch()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        x = torch.arange(1 << 20, device="cuda", dtype=torch.float32)
        total = x.sum()
    stream.synchronize()
    if int(total.item()) != (1 << 20) * ((1 << 20) - 1) // 2:
        raise RuntimeError("a reduction on the GPU gave a wrong sum")
    props = torch.cuda.get_device_properties(0)
    return f"{props.name} sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"


def _tiny_onnx(folder: Path) -> tuple[object, Path]:
    """y = 2x + 1 over (batch, 64): the smallest model whose stale inputs show."""
    import onnx
    from onnx import TensorProto, helper

    from refsd_trt.export.specs import AxisRange, ModelSpec, TensorSpec

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0]), helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    path = folder / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    spec = ModelSpec("tiny", (TensorSpec("x", "float", ("batch", 64)),), (TensorSpec("y", "float", ("batch", 64)),),
                     {"batch": AxisRange(1, 4, 4)})
    return spec, path


def check_onnxruntime(folder: Path) -> str:
    torch = _torch()
    from refsd_trt.engine.onnxruntime_backend import OrtEngine

    spec, path = _tiny_onnx(folder)
    engine = OrtEngine(spec, path, device="cuda")  # refuses a CPU fallback or a private stream
    x = torch.randn(4, 64, device="cuda")
    y = engine.run({"x": x})["y"]
    torch.testing.assert_close(y, 2 * x + 1)
    options = engine.session.get_provider_options()["CUDAExecutionProvider"]
    return f"{engine.backend} on stream {engine.stream.cuda_stream:#x} (has_user_compute_stream={options['has_user_compute_stream']})"


def _delayed_producer(engine, torch) -> None:
    """The feed is written on torch's current stream after a long sleep kernel; the engine must
    wait for it, and torch's next read must wait for the engine."""
    x = torch.zeros(4, 64, device="cuda")
    torch.cuda.synchronize()
    torch.cuda._sleep(200_000_000)  # about 0.1 s of GPU time on the current stream
    x.fill_(3.0)
    y = engine.run({"x": x})["y"]
    if not torch.equal(y, torch.full_like(y, 7.0)):  # read on the current stream, after the engine
        raise RuntimeError(f"{engine.backend} read its input before the producer wrote it, or torch read "
                           "the output before the engine wrote it (streams not ordered)")


def check_stream_order(folder: Path) -> str:
    torch = _torch()
    from refsd_trt.engine.onnxruntime_backend import OrtEngine

    spec, path = _tiny_onnx(folder)
    engines = [OrtEngine(spec, path, device="cuda")]
    if importlib.util.find_spec("tensorrt") is not None:
        from refsd_trt.engine.tensorrt_backend import TrtEngine
        from refsd_trt.export import tensorrt_build

        plan = folder / "tiny.plan"
        tensorrt_build.build(path, spec.profile(), plan)
        engines.append(TrtEngine(spec, plan))
    for engine in engines:
        _delayed_producer(engine, torch)
    return "ordered: " + ", ".join(e.backend for e in engines)


def check_cupy() -> str:
    if importlib.util.find_spec("cupy") is None:
        raise Skip("CuPy is not installed (the torch ops run instead)")
    torch = _torch()
    import refsd_trt.kernels as K
    from refsd_trt.kernels import cupy_ops, dispatch

    cupy_ops.compile_all()
    if dispatch.fused("to_float") is None:
        raise RuntimeError("CuPy is installed but the dispatcher keeps the torch ops (see the warning above)")
    images = torch.randint(0, 256, (2, 3, 37, 53), dtype=torch.uint8, device="cuda")
    torch.testing.assert_close(cupy_ops.to_float(images), K.to_float.torch(images), rtol=0, atol=1e-6)
    return f"{sum(len(v) for v in cupy_ops.KERNELS.values())} kernels compiled; conversions match torch"


# The tiny zoo's components a pipeline runs on TensorRT, with small profiles (quick builds).
COMPONENTS = (("sdxl", "unet"), ("sdxl", "text_encoder"), ("sdxl", "text_encoder_2"),
              ("sdxl-vae-fp16-fix", "vae_encoder"), ("sdxl-vae-fp16-fix", "vae_decoder"), ("sd-inpaint", "unet"))
SMALL = {"batch": (1, 2, 2), "height": (256, 256, 256), "width": (256, 256, 256), "tokens": (77, 77, 77)}


def _profile(spec):
    from refsd_trt.export.specs import AxisRange

    return {name: AxisRange(*SMALL[name]) for name in spec.axes if name in SMALL}


def _max_rel_diff(got, want) -> float:
    return max(float((got[n].float().cpu() - want[n].float().cpu()).abs().max())
               / max(1.0, float(want[n].float().abs().max())) for n in want)


def _tiny_plan(root: Path, entry: str, component: str):
    """(spec, fp16 ONNX artifact, TensorRT plan artifact) of a tiny-zoo component at the SMALL profile."""
    if importlib.util.find_spec("tensorrt") is None:
        raise Skip("TensorRT is not installed (pip install 'refsd-trt[gpu]')")
    from refsd_trt.export import sources
    from refsd_trt.export.formats import export
    from refsd_trt.models.tiny_zoo import entry_path

    ref = entry_path(entry)
    onnx = export(ref, component, "onnx-fp16", root=root)
    spec = sources.spec_of(component, onnx.manifest["config"])
    return spec, onnx, export(ref, component, "tensorrt-fp16", root=root, axes=_profile(spec))


def check_tensorrt(root: Path) -> str:
    from refsd_trt.engine.onnxruntime_backend import OrtEngine
    from refsd_trt.engine.tensorrt_backend import TrtEngine

    lines = []
    for entry, component in COMPONENTS:
        spec, onnx, plan = _tiny_plan(root, entry, component)
        axes = {name: r.opt for name, r in _profile(spec).items()}
        feeds = spec.example_inputs("float16", "cuda", **axes)
        trt = TrtEngine(spec, plan.main_file)
        got = trt.run(feeds)
        want = OrtEngine(spec, onnx.main_file, device="cuda").run(feeds)
        _torch().cuda.synchronize()
        diff = _max_rel_diff(got, want)
        if diff > 2e-2:
            raise RuntimeError(f"{entry}:{component}: TensorRT differs from onnxruntime by {diff:.3g} (relative)")
        memory = max(trt.activation_bytes.values()) / 2**20
        lines.append(f"{entry}:{component} {diff:.1e} {memory:.0f} MiB")
        trt.close()
    return "TensorRT = onnxruntime on the same feeds: " + "; ".join(lines)


@dataclass(frozen=True)
class RunnerComparison:
    """What polygraphy's comparator found between two runners on the same feeds."""

    passed: bool  # polygraphy's verdict: no element past both tolerances
    max_abs: dict[str, float]  # per output, over every feed
    tolerance: float


def compare_runners(first, second, feeds: Sequence[Mapping[str, object]], tolerance: float) -> RunnerComparison:
    """Run two polygraphy runners on ``feeds`` (numpy arrays) through ``Comparator`` and compare the
    second with the first: an element fails past ``tolerance`` both absolute and relative."""
    import numpy as np
    from polygraphy.comparator import Comparator, SimpleCompareFunc

    results = Comparator.run([first, second], data_loader=list(feeds))
    accuracy = Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=tolerance, rtol=tolerance))
    (_, a), (_, b) = results.items()
    max_abs = {name: max(float(np.abs(x[name].astype(np.float32) - y[name].astype(np.float32)).max())
                         for x, y in zip(a, b)) for name in a[0]}
    return RunnerComparison(bool(accuracy), max_abs, tolerance)


def onnxruntime_runner(path: Path, name: str):
    """polygraphy's ONNX-Runtime runner on the CPU provider (the reference a TensorRT plan answers to)."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    return OnnxrtRunner(SessionFromOnnx(str(path), providers=["cpu"]), name=name)


def tensorrt_runner(plan: Path, name: str):
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return TrtRunner(EngineFromBytes(BytesFromPath(str(plan))), name=name)


# fp16 TensorRT against fp16 onnxruntime-CPU: kernels and accumulation orders differ, weights do not.
POLYGRAPHY_TOLERANCE = 2e-2


def check_polygraphy(root: Path) -> str:
    if importlib.util.find_spec("polygraphy") is None:
        raise Skip("polygraphy is not installed (pip install 'refsd-trt[gpu]')")
    lines = []
    for entry, component in COMPONENTS:
        spec, onnx, plan = _tiny_plan(root, entry, component)
        axes = {name: r.opt for name, r in _profile(spec).items()}
        feeds = {k: v.numpy() for k, v in spec.example_inputs("float16", "cpu", **axes).items()}
        found = compare_runners(tensorrt_runner(plan.main_file, "tensorrt"),
                                onnxruntime_runner(onnx.main_file, "onnxruntime-cpu"), [feeds], POLYGRAPHY_TOLERANCE)
        worst = max(found.max_abs.values())
        if not found.passed:
            raise RuntimeError(f"{entry}:{component}: polygraphy's comparator finds TensorRT and onnxruntime-cpu "
                               f"apart past {found.tolerance} (max abs {worst:.3g})")
        lines.append(f"{entry}:{component} {worst:.1e}")
    return "polygraphy Comparator, TensorRT vs onnxruntime-cpu (max abs): " + "; ".join(lines)


def check_graphs(root: Path) -> str:
    spec, _, plan = _tiny_plan(root, "sdxl-vae-fp16-fix", "vae_decoder")
    torch = _torch()
    from refsd_trt.engine.tensorrt_backend import TrtEngine

    feeds = spec.example_inputs("float16", "cuda", batch=2, height=256, width=256)
    eager = TrtEngine(spec, plan.main_file).run(feeds)["images"].clone()
    graphed = TrtEngine(spec, plan.main_file, cuda_graph=True)
    first = graphed.run(feeds)["images"].clone()  # captures
    again = graphed.run(feeds)["images"].clone()  # replays
    torch.cuda.synchronize()
    if not (torch.equal(first, eager) and torch.equal(again, eager)):
        raise RuntimeError("the captured CUDA graph's output differs from the eager run's")
    return "captured on the engine's stream; replay = eager, bit for bit"


def check_bindings(root: Path) -> str:
    spec, _, plan = _tiny_plan(root, "sdxl", "unet")
    torch = _torch()
    from refsd_trt.engine.tensorrt_backend import TrtEngine, aligned

    engine = TrtEngine(spec, plan.main_file)
    feeds = spec.example_inputs("float16", "cuda", batch=2, height=256, width=256, tokens=77)
    rows = torch.tensor([[999.0, 999.0], [501.0, 501.0]], device="cuda")  # a schedule, one row per step
    row = rows[1]
    if aligned(row.data_ptr()):
        raise RuntimeError("the test row happens to be aligned; cannot check the staging path")
    want = engine.run({**feeds, "timestep": row.clone()})["out_sample"].clone()
    got = engine.run({**feeds, "timestep": row})["out_sample"].clone()
    torch.cuda.synchronize()
    if not torch.equal(got, want):
        raise RuntimeError("a feed 8 bytes past an aligned address gave another result than its aligned copy")
    return f"unaligned timestep row ({row.data_ptr() % 256} bytes past 256) staged; same output"


def check_backends(root: Path) -> str:
    torch = _torch()
    from refsd_trt.engine.factory import available_backends, load_engine
    from refsd_trt.export import sources
    from refsd_trt.models.tiny_zoo import entry_path

    ref = entry_path("sdxl-vae-fp16-fix")
    loaded = sources.load(ref, "vae_decoder")
    feeds = loaded.spec.example_inputs(batch=2, height=256, width=256)
    with torch.no_grad():
        want = dict(zip(loaded.spec.output_names, loaded.model(*feeds.values())))
    lines = []
    for backend in available_backends(torch.device("cuda")):
        options = {"profile": _profile(loaded.spec)} if backend == "tensorrt" else {}
        engine = load_engine(ref, "vae_decoder", backend=backend, device="cuda", precision="float16", root=root, **options)
        got = engine.run({k: v.to("cuda", torch.float16) for k, v in feeds.items()})
        torch.cuda.synchronize()
        diff = _max_rel_diff(got, want)
        if diff > 2e-2:
            raise RuntimeError(f"{engine.backend} fp16 differs from torch fp32 by {diff:.3g} (relative)")
        lines.append(f"{engine.backend} {diff:.1e}")
    return "vae_decoder fp16 vs torch fp32: " + ", ".join(lines)


def check_gpu_tests() -> str:
    tests = Path(__file__).resolve().parent.parent / "tests"
    if not (tests / "conftest.py").is_file() or importlib.util.find_spec("pytest") is None:
        raise Skip("no source checkout with tests/ and pytest here")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(tests)],
                          capture_output=True, text=True, cwd=tests.parent, check=False)
    last = (done.stdout.strip().splitlines() or ["no output"])[-1]
    if done.returncode != 0:
        raise RuntimeError(f"pytest -m gpu: {last}")
    return f"pytest -m gpu: {last}"


def checks(work: Path) -> list[tuple[str, Callable[[], str]]]:
    artifacts = work / "artifacts"
    return [
        ("packaging", check_packaging),
        ("torch on CUDA", check_torch),
        ("onnxruntime CUDA provider", lambda: check_onnxruntime(work)),
        ("stream ordering", lambda: check_stream_order(work)),
        ("CuPy kernels", check_cupy),
        ("TensorRT per component", lambda: check_tensorrt(artifacts)),
        ("polygraphy comparator", lambda: check_polygraphy(artifacts)),
        ("CUDA graph vs eager", lambda: check_graphs(artifacts)),
        ("aligned bindings", lambda: check_bindings(artifacts)),
        ("backends vs torch", lambda: check_backends(artifacts)),
        ("gpu-marked tests", check_gpu_tests),
    ]


def run(print_line: Callable[[str], None] = print) -> int:
    """0 when every check passed (or did not apply), 1 at the first broken layer, 2 without a GPU."""
    try:
        torch = _torch()
        available = torch.cuda.is_available()
    except Exception as exc:  # noqa: BLE001 -- a broken torch install is itself the answer
        print_line(f"no GPU check: torch does not load ({one_line(exc)})")
        return 2
    if not available:
        print_line(f"no NVIDIA GPU visible to torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'}): "
                   "nothing to check on this machine")
        return 2
    with tempfile.TemporaryDirectory(prefix="refsd-trt-gpu-check-") as folder:
        for i, (name, check) in enumerate(checks(Path(folder)), 1):
            try:
                detail = check()
            except Skip as why:
                print_line(f"SKIP {i:>2}. {name}: {why}")
                continue
            except Exception as exc:  # noqa: BLE001 -- each layer's failure is reported on its line
                print_line(f"FAIL {i:>2}. {name}: {one_line(exc)}")
                return 1
            print_line(f"OK   {i:>2}. {name}: {detail}")
    return 0
