"""One declarative contract per model: input/output names, dtypes, dynamic axes and profile ranges.

Export, engine build and every runtime backend read these specs; a reader opens this file to learn
what a model takes and returns. Shapes mix fixed sizes (ints, derived from the model's own config)
and named dynamic axes (strings) whose min/opt/max ranges become TensorRT optimization profiles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from torch import nn

# The contract itself lives in a neutral module (the engines import it too); re-exported here.
from refsd_trt.modelspec import DTYPES, EXAMPLE_INT_HIGH, AxisRange, ModelSpec, TensorSpec  # noqa: F401


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


def sdxl_time_ids(cfg: Mapping) -> int:
    """How many ``time_ids`` an SDXL UNet takes: ``cfg["time_ids"]`` where the config says, else 5
    where ``requires_aesthetics_score`` (model_index.json's flag, the refiner) is set, else 6."""
    if "time_ids" in cfg:
        return int(cfg["time_ids"])
    return 5 if cfg.get("requires_aesthetics_score") else 6


def unet_spec(cfg: Mapping, name: str = "unet") -> ModelSpec:
    sdxl = cfg.get("addition_embed_type") == "text_time"
    inputs = [
        _t("sample", "batch", cfg["in_channels"], "latent_height", "latent_width"),
        # float32 whatever the precision, as diffusers feeds it: fp16 holds 999 only to 0.5, and the
        # fp16 export keeps its sinusoidal embedding fp32 (export/fp16.py).
        _t("timestep", "batch", dtype="float32"),
        _t("encoder_hidden_states", "batch", "tokens", cfg["cross_attention_dim"]),
    ]
    if sdxl:
        # diffusers' _get_add_time_ids: 6 size values, or 5 (size, crop, aesthetic score) for
        # checkpoints that require an aesthetic score (the refiner: 2560 = 1280 + 5 * 256).
        count = sdxl_time_ids(cfg)
        pooled = cfg["projection_class_embeddings_input_dim"] - count * cfg["addition_time_embed_dim"]
        inputs += [_t("text_embeds", "batch", pooled), _t("time_ids", "batch", count, dtype="float32")]
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
