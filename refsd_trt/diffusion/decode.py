"""VAE decode: once per crop per stage, after the last denoising step."""

from __future__ import annotations

import torch

from refsd_trt.engine import Engine


def decode_latents(vae_decoder: Engine, latents: torch.Tensor, scaling_factor: float) -> torch.Tensor:
    """(n, 3, H, W) float32 images in about [-1, 1] (unclamped, as the VAE returns them)."""
    dtype = vae_decoder.spec.inputs[0].torch_dtype(vae_decoder.precision)
    return vae_decoder.run({"latents": (latents / scaling_factor).to(dtype)})["images"].float()
