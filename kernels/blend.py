"""Alpha blending and pasting generated patches back into full images."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import fusable

#: Boxes narrower than this (pixels) are treated as this wide, so degenerate boxes paste nothing
#: instead of producing NaN.
MIN_EXTENT = 1e-6


def alpha_blend(fg: torch.Tensor, bg: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """``fg * alpha + bg * (1 - alpha)`` with broadcasting; alpha in [0, 1]. Returns a new tensor."""
    return bg + alpha * (fg - bg)


@fusable
def paste_back(
    canvas: torch.Tensor,
    patches: torch.Tensor,
    boxes: torch.Tensor,
    alphas: torch.Tensor | None = None,
    image_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Resample each patch (and its alpha) into its box's pixel footprint and blend, in order.

    canvas: (C, H, W) one image, or (B, C, H, W) with ``image_index`` (N,) long naming each
    patch's image (default: all into image 0). Float, any value range; modified IN PLACE and returned.
    patches: (N, C, h, w) float, the crops made for ``boxes`` (N, 4) xyxy float pixel coordinates.
    alphas: (N, 1, h, w) in [0, 1] at patch resolution, or None for opaque patches.
    A canvas pixel belongs to a box when its centre lies in [x1, x2) x [y1, y2); it takes the
    bilinear sample of the patch at the same relative position (edge-clamped), so a patch cut with
    crop_resize at the box's own pixel size pastes back exactly. Box parts outside the canvas are
    dropped. Later patches are blended over earlier ones.
    """
    batched = canvas if canvas.dim() == 4 else canvas.unsqueeze(0)  # a view: writes reach canvas
    channels, height, width = batched.shape[1:]
    count = patches.shape[0]
    if alphas is None:
        alphas = patches.new_ones((count, 1, *patches.shape[-2:]))
    if alphas.shape[-2:] != patches.shape[-2:]:
        raise ValueError(f"alphas {tuple(alphas.shape)} must match the patches' size {tuple(patches.shape)}")
    if image_index is None:
        image_index = torch.zeros(count, dtype=torch.long, device=canvas.device)
    image_index = image_index.to(canvas.device)
    boxes = boxes.to(device=canvas.device, dtype=torch.float32)
    sources = torch.cat([patches, alphas.to(patches.dtype)], dim=1).to(
        device=canvas.device, dtype=canvas.dtype
    )
    cx = torch.arange(width, device=canvas.device, dtype=torch.float32) + 0.5
    cy = torch.arange(height, device=canvas.device, dtype=torch.float32) + 0.5
    for i in range(count):
        x1, y1, x2, y2 = boxes[i].unbind()  # 0-d device tensors: no host round trip
        gx = (cx - x1) / (x2 - x1).clamp_min(MIN_EXTENT) * 2 - 1
        gy = (cy - y1) / (y2 - y1).clamp_min(MIN_EXTENT) * 2 - 1
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), dim=-1)[None]
        sample = F.grid_sample(
            sources[i : i + 1],
            grid.to(canvas.dtype),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        inside = ((cy >= y1) & (cy < y2))[:, None] & ((cx >= x1) & (cx < x2))[None, :]
        target = image_index[i : i + 1]
        blended = alpha_blend(
            sample[:, :channels], batched.index_select(0, target), sample[:, channels:] * inside
        )
        batched.index_copy_(0, target, blended)
    return canvas
