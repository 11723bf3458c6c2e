"""The extra UNet input channels of 9-channel inpainting models, prepared as diffusers does."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def binarize_and_mask(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``masks`` (n, 1, H, W) in [0, 1], 1 = repaint. Returns the mask binarized at 0.5 (diffusers'
    mask processor) and the images with the repaint region set to 0 (mid-gray in [-1, 1])."""
    binary = (masks >= 0.5).to(images.dtype)
    return binary, images * (binary < 0.5)


def inpaint_channels(binary: torch.Tensor, masked_latents: torch.Tensor) -> torch.Tensor:
    """(n, 1 + latent_channels, h, w): the mask, nearest-downsampled to the latent grid, ‖ the masked
    image's latents: the channels an inpainting UNet reads after the noisy latents."""
    mask = F.interpolate(binary, size=masked_latents.shape[-2:])  # nearest, diffusers' default
    return torch.cat([mask.to(masked_latents.dtype), masked_latents], dim=1)
