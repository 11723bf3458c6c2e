"""One declarative contract per model: input/output names, dtypes, dynamic axes and profile ranges.

Export, engine build and every runtime backend read these specs; a reader opens this file to learn
what a model takes and returns. Shapes mix fixed sizes (ints, derived from the model's own config)
and named dynamic axes (strings) whose min/opt/max ranges become TensorRT optimization profiles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "int32": torch.int32}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # a key of DTYPES; "float" follows the model's precision (float32 or float16)
    shape: tuple[int | str, ...]  # ints are fixed, strings name a dynamic axis

    def torch_dtype(self, precision: str = "float32") -> torch.dtype:
        return DTYPES[precision if self.dtype == "float" else self.dtype]


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


def _t(name: str, *shape: int | str, dtype: str = "float") -> TensorSpec:
    return TensorSpec(name, dtype, tuple(shape))


# ---------------------------------------------------------------------------------------------
# Wrapper modules: positional inputs in spec order -> tuple of outputs in spec order. The ONNX
# exporter traces exactly these, and the torch backend runs exactly these, so the two agree.


class _UNet(nn.Module):
    def __init__(self, unet: nn.Module, sdxl: bool):
        super().__init__()
        self.unet, self.sdxl = unet, sdxl

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds=None, time_ids=None):
        added = {"text_embeds": text_embeds, "time_ids": time_ids} if self.sdxl else None
        return (self.unet(sample, timestep, encoder_hidden_states, added_cond_kwargs=added, return_dict=False)[0],)


class _VaeEncoder(nn.Module):
    """Returns the latent distribution's moments (mean ‖ logvar) so callers sample it themselves."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, images):
        h = self.vae.encoder(images)
        if self.vae.quant_conv is not None:
            h = self.vae.quant_conv(h)
        return (h,)


class _VaeDecoder(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return (self.vae.decode(latents, return_dict=False)[0],)


class _TextEncoder(nn.Module):
    """CLIP text encoders: SD uses the last hidden state, SDXL the penultimate one plus a pooled embedding."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids):
        out = self.encoder(input_ids, output_hidden_states=True, return_dict=True)
        pooled = out.text_embeds if hasattr(out, "text_embeds") else out.pooler_output
        return out.last_hidden_state, out.hidden_states[-2], pooled


class _Passthrough(nn.Module):
    """Ultralytics models already return (predictions, prototypes) tensors in export mode."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images):
        out = self.model(images)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# ---------------------------------------------------------------------------------------------
# Spec builders: each takes the model's own config (a diffusers/transformers config dict, or the
# ultralytics head's attributes) so fixed sizes come from the checkpoint, never from constants.

BATCH = AxisRange(1, 4, 16)
IMAGE = AxisRange(256, 1024, 1536)  # pixels
YOLO_IMAGE = AxisRange(160, 640, 1280)


def unet_spec(cfg: Mapping, name: str = "unet") -> ModelSpec:
    sdxl = cfg.get("addition_embed_type") == "text_time"
    inputs = [
        _t("sample", "batch", cfg["in_channels"], "latent_height", "latent_width"),
        _t("timestep", "batch"),
        _t("encoder_hidden_states", "batch", "tokens", cfg["cross_attention_dim"]),
    ]
    if sdxl:
        pooled = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
        inputs += [_t("text_embeds", "batch", pooled), _t("time_ids", "batch", 6)]
    return ModelSpec(
        name=name,
        inputs=tuple(inputs),
        outputs=(_t("out_sample", "batch", cfg["out_channels"], "latent_height", "latent_width"),),
        axes={"batch": BATCH, "height": IMAGE, "width": IMAGE, "tokens": AxisRange(77, 77, 77 * 3)},
        derived={"latent_height": ("height", 1, 8), "latent_width": ("width", 1, 8)},
    )


def vae_encoder_spec(cfg: Mapping) -> ModelSpec:
    return ModelSpec(
        name="vae_encoder",
        inputs=(_t("images", "batch", cfg["in_channels"], "height", "width"),),
        outputs=(_t("latent_parameters", "batch", 2 * cfg["latent_channels"], "latent_height", "latent_width"),),
        axes={"batch": BATCH, "height": IMAGE, "width": IMAGE},
        derived={"latent_height": ("height", 1, 8), "latent_width": ("width", 1, 8)},
    )


def vae_decoder_spec(cfg: Mapping) -> ModelSpec:
    return ModelSpec(
        name="vae_decoder",
        inputs=(_t("latents", "batch", cfg["latent_channels"], "latent_height", "latent_width"),),
        outputs=(_t("images", "batch", cfg["out_channels"], "height", "width"),),
        axes={"batch": BATCH, "height": IMAGE, "width": IMAGE},
        derived={"latent_height": ("height", 1, 8), "latent_width": ("width", 1, 8)},
    )


def text_encoder_spec(cfg: Mapping, name: str = "text_encoder") -> ModelSpec:
    pooled = cfg.get("projection_dim") if "WithProjection" in str(cfg.get("architectures", "")) else None
    return ModelSpec(
        name=name,
        inputs=(_t("input_ids", "batch", "tokens", dtype="int64"),),
        outputs=(
            _t("last_hidden_state", "batch", "tokens", cfg["hidden_size"]),
            _t("penultimate_hidden_state", "batch", "tokens", cfg["hidden_size"]),
            _t("pooled", "batch", pooled or cfg["hidden_size"]),
        ),
        axes={"batch": AxisRange(1, 2, 16), "tokens": AxisRange(cfg["max_position_embeddings"], cfg["max_position_embeddings"], cfg["max_position_embeddings"])},
    )


def _yolo_head(name: str, output0: TensorSpec, nm: int, anchors: Callable[[Mapping[str, int]], int]) -> ModelSpec:
    """The layout every YOLO export shares: one image input at dynamic batch and size, the head's
    predictions, and for seg heads the prototypes at a quarter of the input size."""
    outputs = [output0]
    if nm:
        outputs.append(_t("output1", "batch", nm, "proto_height", "proto_width"))
    return ModelSpec(
        name=name,
        inputs=(_t("images", "batch", 3, "height", "width"),),
        outputs=tuple(outputs),
        axes={"batch": BATCH, "height": YOLO_IMAGE, "width": YOLO_IMAGE},
        derived={"proto_height": ("height", 1, 4), "proto_width": ("width", 1, 4)},
        computed={"anchors": anchors},
    )


def yolo_spec(cfg: Mapping, name: str) -> ModelSpec:
    """``cfg``: nc (classes), nm (mask coefficients, 0 for pose), nk (keypoint values, 0 for seg),
    strides (of the detection levels, default YOLOv8's 8/16/32)."""
    rows = 4 + cfg["nc"] + cfg.get("nm", 0) + cfg.get("nk", 0)
    return _yolo_head(name, _t("output0", "batch", rows, "anchors"), cfg.get("nm", 0),
                      partial(yolo_anchors, strides=tuple(cfg.get("strides", (8, 16, 32)))))


def yolo_anchors(axes: Mapping[str, int], strides: tuple[int, ...] = (8, 16, 32)) -> int:
    """One prediction per cell of each detection level's grid (the image size is a multiple of 32)."""
    return sum((axes["height"] // s) * (axes["width"] // s) for s in strides)


def yolov5_spec(cfg: Mapping, name: str = "yolov5_seg") -> ModelSpec:
    """YOLOv5 heads emit rows last, ``(B, anchors, 5 + nc + nm)``: center-size box in letterbox
    pixels, objectness, class scores, mask coefficients; ``na`` anchors per grid cell. ``cfg``:
    nc, nm (0 for detect), na, strides. Batch and size are dynamic like YOLOv8's: the head is
    exported with its grids computed from the input size (checked against torch at other sizes
    and batches), so each batch runs at its minimal letterbox rectangle, as YOLOv5's predictor does."""
    nm = cfg.get("nm", 0)
    return _yolo_head(name, _t("output0", "batch", "anchors", 5 + cfg["nc"] + nm), nm,
                      partial(_yolov5_anchors, strides=tuple(cfg["strides"]), per_cell=cfg["na"]))


def _yolov5_anchors(axes: Mapping[str, int], strides: tuple[int, ...], per_cell: int) -> int:
    return per_cell * yolo_anchors(axes, strides)


@dataclass(frozen=True)
class ModelKind:
    """How to build a kind of model's spec from its config, and its export/runtime wrapper."""

    spec: Callable[[Mapping], ModelSpec]
    wrap: Callable[[nn.Module], nn.Module]


KINDS: dict[str, ModelKind] = {
    "unet": ModelKind(unet_spec, lambda m: _UNet(m, sdxl=m.config.get("addition_embed_type") == "text_time")),
    "vae_encoder": ModelKind(vae_encoder_spec, _VaeEncoder),
    "vae_decoder": ModelKind(vae_decoder_spec, _VaeDecoder),
    "text_encoder": ModelKind(text_encoder_spec, _TextEncoder),
    "yolo_detect": ModelKind(lambda c: yolo_spec(c, "yolo_detect"), _Passthrough),
    "yolo_seg": ModelKind(lambda c: yolo_spec(c, "yolo_seg"), _Passthrough),
    "yolo_pose": ModelKind(lambda c: yolo_spec(c, "yolo_pose"), _Passthrough),
    "yolov5_seg": ModelKind(yolov5_spec, _Passthrough),
}


def spec_for(kind: str, cfg: Mapping) -> ModelSpec:
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind].spec(cfg)


def wrap_for(kind: str, model: nn.Module) -> nn.Module:
    return KINDS[kind].wrap(model).eval()
