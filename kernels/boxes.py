"""Crop-box geometry. Boxes are (N, 4) float xyxy in continuous pixel coordinates: pixel (i, j)
covers [j, j + 1) x [i, i + 1), so a box (0, 0, W, H) is the whole image."""

from __future__ import annotations

import torch


def square_boxes(
    boxes: torch.Tensor, scale: float = 1.1, image_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Square crops centred on ``boxes`` with side ``scale`` x the longer side (Zwick et al.).

    With ``image_size=(H, W)`` each square is shifted (never shrunk) to lie inside the image when it
    fits; along an axis where it is longer than the image it is shifted to cover that axis fully,
    as close to its centred position as possible. Returns float (N, 4) xyxy on the boxes' device.
    """
    boxes = boxes.float()
    low, high = boxes[:, :2], boxes[:, 2:]
    side = (high - low).amax(dim=1, keepdim=True) * scale
    start = (low + high) / 2 - side / 2
    if image_size is not None:
        height, width = image_size
        slack = torch.cat([width - side, height - side], dim=1)  # (N, 2); Python sizes: no host copy
        # fits: start in [0, slack]; too long: start in [slack, 0], i.e. the square covers the axis
        start = torch.minimum(torch.maximum(start, slack.clamp(max=0)), slack.clamp(min=0))
    return torch.cat([start, start + side], dim=1)
