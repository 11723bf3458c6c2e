"""Back-to-front merge by coverage (Zwick et al.): the instance covering the fewest pixels is pasted
first, the largest last, so a large foreground person is never overwritten by a small one behind."""

from __future__ import annotations

import torch

from .blend import paste_back


def coverage(masks: torch.Tensor) -> torch.Tensor:
    """(N, ...) masks -> (N,) float32 sum of each mask. Measure in image pixels (full-resolution
    masks): crop-space masks all have the crop's size and would not compare people."""
    return masks.flatten(1).float().sum(dim=1)


def coverage_order(masks: torch.Tensor) -> torch.Tensor:
    """Paste order (N,) long: ascending coverage, ties kept in input order."""
    return torch.argsort(coverage(masks), stable=True)


def coverage_merge(
    canvas: torch.Tensor,
    patches: torch.Tensor,
    boxes: torch.Tensor,
    alphas: torch.Tensor | None,
    coverages: torch.Tensor,
    image_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`paste_back` in ascending order of ``coverages`` (N,) (stable for ties); same shapes,
    same in-place contract (the canvas is modified and returned)."""
    order = torch.argsort(coverages.to(patches.device), stable=True)

    def take(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.index_select(0, order.to(t.device))

    return paste_back(canvas, take(patches), take(boxes), take(alphas), take(image_index))
