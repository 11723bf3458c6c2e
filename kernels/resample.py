"""Batched crop-and-resize of boxes out of a batch of images (or masks) on any device."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_resize(
    images: torch.Tensor,
    boxes: torch.Tensor,
    image_index: torch.Tensor,
    size: tuple[int, int],
    mode: str = "bilinear",
    padding: str = "zeros",
) -> torch.Tensor:
    """Crops of ``boxes`` resized to ``size``.

    images: (B, C, H, W), any floating dtype (bool/integer masks are read as float32).
    boxes: (N, 4) xyxy in continuous pixel coordinates (pixel (i, j) covers [j, j+1) x [i, i+1)).
    image_index: (N,) long, which image each box is cut from. size: (h, w) Python ints.
    mode: "bilinear" (images, soft masks), "nearest" (hard masks) or "bicubic".
    padding: what a box partly outside the image sees there: "zeros" (default; 0 is mid-grey in
    [-1, 1] images and "no person" in masks) or "border" (edge pixels repeated).
    Output pixel (r, c) samples the box at its own pixel centre, the roi_align(aligned=True)
    convention, so an integer box at its own size returns the pixels unchanged.
    Returns (N, C, h, w) in the images' dtype (float32 for non-float input).
    """
    if not images.is_floating_point():
        images = images.float()
    out_h, out_w = size
    height, width = images.shape[-2:]
    boxes = boxes.to(device=images.device, dtype=torch.float32)
    if boxes.shape[0] == 0:
        return images.new_zeros((0, images.shape[1], out_h, out_w))

    def axis(start: torch.Tensor, stop: torch.Tensor, steps: int, extent: int) -> torch.Tensor:
        frac = (torch.arange(steps, device=images.device, dtype=torch.float32) + 0.5) / steps
        # align_corners=False: -1 and +1 are the outer edges of the first and last pixel
        return (start[:, None] + frac * (stop - start)[:, None]) * (2.0 / extent) - 1.0

    gx = axis(boxes[:, 0], boxes[:, 2], out_w, width)  # (N, w)
    gy = axis(boxes[:, 1], boxes[:, 3], out_h, height)  # (N, h)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    if images.shape[0] == 1:  # one image: a stride-0 view instead of N copies of it
        sources = images.expand(boxes.shape[0], *images.shape[1:])
    else:
        sources = images.index_select(0, image_index.to(images.device))
    return F.grid_sample(sources, grid.to(images.dtype), mode=mode, padding_mode=padding, align_corners=False)
