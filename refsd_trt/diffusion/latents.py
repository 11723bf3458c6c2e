"""Latent preparation: per-crop noise, VAE encoding with sampling, and the noised start latents.

Every random draw comes from the crop's own generator, one crop at a time, through diffusers'
``randn_tensor``: a crop's noise is then the same whether it runs alone or in any batch, and equals
what a diffusers pipeline draws for that crop from the same generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor

from refsd_trt.diffusion.timesteps import Schedule
from refsd_trt.engine import Engine


def randn_per_crop(generators: Sequence[torch.Generator | None], shape: tuple[int, ...],
                   device: torch.device) -> torch.Tensor:
    """(len(generators), *shape) float32 normal noise; ``None`` marks a padding row (zeros, no draw)."""
    rows = [
        torch.zeros((1, *shape), device=device) if g is None
        else randn_tensor((1, *shape), generator=g, device=device, dtype=torch.float32)
        for g in generators
    ]
    return torch.cat(rows)


def encode_moments(vae_encoder: Engine, images: torch.Tensor) -> torch.Tensor:
    """(n, 2·latent_channels, h, w) float32 moments (mean ‖ logvar) of images in [-1, 1]."""
    dtype = vae_encoder.spec.inputs[0].torch_dtype(vae_encoder.precision)
    return vae_encoder.run({"images": images.to(dtype)})["latent_parameters"].float()


def sample_latents(moments: torch.Tensor, eps: torch.Tensor, scaling_factor: float) -> torch.Tensor:
    """diffusers' ``retrieve_latents(sample_mode="sample")`` then × scaling factor: mean + std·eps,
    with logvar clamped to [-30, 20] as ``DiagonalGaussianDistribution`` does."""
    mean, logvar = torch.chunk(moments, 2, dim=1)
    std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
    return scaling_factor * (mean + std * eps)


def start_latents(schedule: Schedule, image_latents: torch.Tensor | None, noise: torch.Tensor) -> torch.Tensor:
    """The latents the first step denoises: the image latents noised to the start timestep, or — for
    inpainting at full strength, as diffusers' inpaint pipelines do — pure noise × init_noise_sigma."""
    if image_latents is None:
        return noise * schedule.scheduler.init_noise_sigma
    start = schedule.timesteps[:1].repeat(noise.shape[0])
    return schedule.scheduler.add_noise(image_latents, noise, start)
