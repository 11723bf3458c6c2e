"""TensorRT engine builds from ONNX: a thin adapter over TensorRT's documented Python builder API.

GPU machines only; ``tensorrt`` is imported inside the functions, so this module imports on any
machine. Networks are strongly typed (each tensor's precision comes from the ONNX file, which is
TensorRT 11's only mode), the optimization profile comes from the spec, tactic timings persist in
a timing cache shared by all builds on this GPU. Engines are built refittable only when asked
(``refittable=True``: new weights of the same architecture go in without a rebuild, at the cost of
the optimizations that fold weights into kernels). One TensorRT logger serves every builder,
refitter and runtime of the process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

from refsd_trt.export.artifacts import write_atomic
from refsd_trt.paths import cache_dir

log = logging.getLogger(__name__)

Profile = Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


class TensorRTUnavailable(RuntimeError):
    pass


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            "TensorRT is not installed (pip install 'refsd-trt[gpu]' on an NVIDIA GPU machine)") from exc
    return trt


def gpu_name() -> str:
    """The GPU engines are built for (raises where TensorRT or a GPU is missing)."""
    import torch

    import_tensorrt()
    if not torch.cuda.is_available():
        raise TensorRTUnavailable("TensorRT engines are built on an NVIDIA GPU; torch sees none")
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return f"{props.name} sm_{props.major}{props.minor}"


def timing_cache_path(trt_version: str, gpu: str) -> Path:
    safe = "".join(c if c.isalnum() else "_" for c in gpu)
    return cache_dir() / "tensorrt" / f"timing-{trt_version}-{safe}.cache"


@functools.cache
def logger():
    """The process's one TensorRT logger (every Builder, Runtime and Refitter takes it)."""
    trt = import_tensorrt()
    return trt.Logger(trt.Logger.WARNING)


def _strongly_typed_flags(trt) -> int:
    # TensorRT 10 needs the flag; TensorRT 11 builds strongly typed networks only and may drop it.
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build(onnx_path: Path, profile: Profile, plan_path: Path, workspace_gib: float | None = None,
          refit: bool = False) -> dict:
    """Parse ``onnx_path``, build a serialized engine for ``profile`` into ``plan_path``; returns
    build facts for the manifest."""
    trt = import_tensorrt()
    builder = trt.Builder(logger())
    network = builder.create_network(_strongly_typed_flags(trt))
    parser = trt.OnnxParser(network, logger())
    if not parser.parse_from_file(str(onnx_path)):  # resolves external weights beside the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if refit:
        config.set_flag(trt.BuilderFlag.REFIT)
    opt = builder.create_optimization_profile()
    for name, (lo, mid, hi) in profile.items():
        opt.set_shape(name, lo, mid, hi)
    config.add_optimization_profile(opt)

    cache_file = timing_cache_path(trt.__version__, gpu_name())
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    log.info("building TensorRT engine from %s (this takes minutes for full-size models)", onnx_path.name)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    write_atomic(plan_path, bytes(plan))
    # Timing caches merge: the next build of any model on this GPU reuses these tactic timings.
    write_atomic(cache_file, bytes(config.get_timing_cache().serialize()))
    return {"tensorrt": trt.__version__, "gpu": gpu_name(), "strongly_typed": True, "refittable": refit,
            "timing_cache": str(cache_file)}


def refit(engine, onnx_path: Path) -> None:
    """Swap the weights of a deserialized refittable engine for those in ``onnx_path`` (same
    architecture, same export settings), in place and without a rebuild."""
    trt = import_tensorrt()
    if not engine.refittable:
        raise RuntimeError(f"refit from {onnx_path}: the engine was not built refittable")
    refitter = trt.Refitter(engine, logger())
    parser = trt.OnnxParserRefitter(refitter, logger())
    if not parser.refit_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"refit from {onnx_path} failed: {errors}")
    if not refitter.refit_cuda_engine():
        raise RuntimeError(f"refit from {onnx_path} failed: TensorRT rejected the new weights")
