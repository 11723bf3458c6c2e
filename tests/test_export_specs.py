"""Spec arithmetic the runtimes rely on to allocate outputs before running."""

from __future__ import annotations

import pytest
from refsd_trt.export.specs import spec_for, yolo_anchors


def test_decoder_image_size_is_solved_from_latents():
    spec = spec_for("vae_decoder", {"latent_channels": 4, "out_channels": 3})
    axes = spec.axis_values(**spec.axes_of({"latents": (2, 4, 40, 48)}))
    assert spec.output_shapes(**axes) == {"images": (2, 3, 320, 384)}


def test_yolo_anchor_count_follows_the_input_size():
    spec = spec_for("yolo_seg", {"nc": 80, "nm": 32, "strides": [8, 16, 32]})
    shapes = spec.output_shapes(**spec.axes_of({"images": (1, 3, 640, 640)}))
    assert shapes == {"output0": (1, 116, 8400), "output1": (1, 32, 160, 160)}
    assert yolo_anchors({"height": 224, "width": 288}) == 28 * 36 + 14 * 18 + 7 * 9


def test_shapes_that_break_the_spec_are_named():
    spec = spec_for("unet", {"in_channels": 9, "out_channels": 4, "cross_attention_dim": 32})
    with pytest.raises(ValueError, match="does not fit"):
        spec.axes_of({"sample": (1, 4, 32, 32), "timestep": (1,), "encoder_hidden_states": (1, 77, 32)})
    with pytest.raises(ValueError, match="does not fit"):  # batch disagrees between inputs
        spec.axes_of({"sample": (2, 9, 32, 32), "timestep": (1,), "encoder_hidden_states": (2, 77, 32)})
    with pytest.raises(ValueError, match="outside its range"):
        spec.shapes(batch=1, height=4096, width=512, tokens=77)
