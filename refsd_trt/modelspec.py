"""The model contract shared by export and every runtime backend: TensorSpec, AxisRange, ModelSpec.

A neutral module: ``refsd_trt.export`` builds specs from model configs (``export/specs.py``) and
``refsd_trt.engine`` runs models by them, and neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "int32": torch.int32}
# The dtype of a model's float inputs and outputs at each engine precision. bf16 engines (CPUs with
# AMX/AVX-512 BF16) compute in bf16 but take and return float32: the runtimes convert at the boundary,
# and nothing in the pipelines (schedulers, guidance, pixels) ever sees bf16.
FLOAT_IO = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.float32}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # a key of DTYPES; "float" follows the engine precision (FLOAT_IO)
    shape: tuple[int | str, ...]  # ints are fixed, strings name a dynamic axis

    def torch_dtype(self, precision: str = "float32") -> torch.dtype:
        return FLOAT_IO[precision] if self.dtype == "float" else DTYPES[self.dtype]


@dataclass(frozen=True)
class AxisRange:
    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"axis range must satisfy 1 <= min <= opt <= max, got {self}")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    axes: Mapping[str, AxisRange]
    # Axes whose value is another axis scaled by an integer (e.g. the latent height is the image
    # height / 8): name -> (source axis, multiplier numerator, denominator). Solved both ways, so a
    # decoder fed latents knows its image size.
    derived: Mapping[str, tuple[str, int, int]] = field(default_factory=dict)
    # Output axes that are no linear function of one axis (YOLO's anchor count): name -> function
    # of the other axis values. Runtimes need them to allocate outputs before running.
    computed: Mapping[str, Callable[[Mapping[str, int]], int]] = field(default_factory=dict)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """The torch.onnx.export ``dynamic_axes`` argument."""
        return {
            t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)} for t in self.inputs + self.outputs
        }

    def axis_values(self, **values: int) -> dict[str, int]:
        """Complete a set of free axis values with the derived and computed ones, checking ranges."""
        out = dict(values)
        for name, (source, num, den) in self.derived.items():
            if source in out:
                out.setdefault(name, out[source] * num // den)
            elif name in out:
                out[source] = out[name] * den // num
        for name, formula in self.computed.items():
            try:
                out.setdefault(name, formula(out))
            except KeyError:  # its inputs are not known yet; shapes() names what is missing
                pass
        for name, value in out.items():
            if name in self.axes and not self.axes[name].min <= value <= self.axes[name].max:
                r = self.axes[name]
                raise ValueError(f"{self.name}: axis {name}={value} outside its range [{r.min}, {r.max}]")
        return out

    def shapes(self, tensors: tuple[TensorSpec, ...] | None = None, **values: int) -> dict[str, tuple[int, ...]]:
        """Concrete shapes of the inputs (or of ``tensors``) for the given axis values."""
        full = self.axis_values(**values)
        try:
            return {t.name: tuple(d if isinstance(d, int) else full[d] for d in t.shape) for t in tensors or self.inputs}
        except KeyError as missing:
            raise ValueError(f"{self.name}: no value for dynamic axis {missing}") from None

    def output_shapes(self, **values: int) -> dict[str, tuple[int, ...]]:
        return self.shapes(self.outputs, **values)

    def axes_of(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
        """Axis values read off concrete input shapes, checking fixed sizes and repeated axes agree."""
        found: dict[str, int] = {}
        for t in self.inputs:
            shape = tuple(shapes[t.name])
            if len(shape) != len(t.shape):
                raise ValueError(f"{self.name}: input {t.name} has shape {shape}, expected rank {len(t.shape)} {t.shape}")
            for dim, size in zip(t.shape, shape):
                fixed_differs = isinstance(dim, int) and dim != size
                axis_differs = isinstance(dim, str) and found.setdefault(dim, size) != size
                if fixed_differs or axis_differs:
                    raise ValueError(f"{self.name}: input {t.name} has shape {shape}, which does not fit {t.shape}")
        return found

    def profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """min/opt/max input shapes, the TensorRT optimization profile."""
        pick = {k: {a: getattr(r, k) for a, r in self.axes.items()} for k in ("min", "opt", "max")}
        per = {k: self.shapes(**v) for k, v in pick.items()}
        return {name: (per["min"][name], per["opt"][name], per["max"][name]) for name in self.input_names}

    def example_inputs(self, precision: str = "float32", device: str | torch.device = "cpu", **values: int):
        """Deterministic example feeds (for export tracing, validation and timing)."""
        gen = torch.Generator().manual_seed(0)
        feeds = {}
        for t, shape in zip(self.inputs, self.shapes(**values).values()):
            dtype = t.torch_dtype(precision)
            if dtype.is_floating_point:
                x = torch.randn(shape, generator=gen)
            else:
                x = torch.randint(0, EXAMPLE_INT_HIGH.get(t.name, 2), shape, generator=gen)
            feeds[t.name] = x.to(device=device, dtype=dtype)
        return feeds


# Upper bounds for integer example inputs (token ids must stay inside the vocabulary).
EXAMPLE_INT_HIGH = {"input_ids": 400, "timestep": 1000}
