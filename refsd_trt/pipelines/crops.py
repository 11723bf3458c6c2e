"""What both methods do around a diffusion stage: cut every person of every image into square
crops of one working resolution, and merge generated crops back, largest person last.

Images of a batch may differ in size, so cutting and merging go image by image; the crops of all
images are concatenated (in image order) so the engines see full batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from refsd_trt.kernels import coverage, coverage_merge, crop_resize, feather, square_boxes
from refsd_trt.types import PersonDetections


def square_crops(detections: Sequence[PersonDetections], canvases: Sequence[torch.Tensor], scale: float,
                 margin: float = 0.0) -> list[torch.Tensor]:
    """Per image, (n, 4) square crop boxes around its people's boxes grown by ``margin`` pixels:
    ``scale`` × the longer side, shifted inside the image where they fit (kernels.square_boxes)."""
    return [square_boxes(d.boxes + d.boxes.new_tensor([-margin, -margin, margin, margin]), scale,
                         tuple(c.shape[-2:])) for d, c in zip(detections, canvases)]


def crop_images(images: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """(N, C, size, size): the (n_i, 4) ``boxes`` of each (C, H, W) image, all images' crops in order.
    Box parts outside an image read zeros (mid-grey in [-1, 1])."""
    return torch.cat([crop_resize(image[None], box, torch.zeros(box.shape[0], dtype=torch.long, device=box.device),
                                  (size, size)) for image, box in zip(images, boxes)])


def crop_masks(masks: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """(N, 1, size, size): person j's (n_i, 1, H, W) mask cut with person j's box, all images in order."""
    return torch.cat([crop_resize(mask, box, torch.arange(box.shape[0], device=box.device), (size, size))
                      for mask, box in zip(masks, boxes)])


def feather_in_image(alphas: torch.Tensor, boxes: Sequence[torch.Tensor], canvases: Sequence[torch.Tensor],
                     radius: int) -> torch.Tensor:
    """(N, 1, S, S) crop-space ``alphas`` (person j's cut with box j) feathered by ``radius`` IMAGE
    pixels: each is put back on its image (zero outside its box), feathered there, and cut again, so
    a soft edge is as wide in the image whatever a crop's scale (no host reads: the boxes stay put)."""
    size, counts, out = alphas.shape[-1], [int(b.shape[0]) for b in boxes], []
    for alpha, box, canvas in zip(alphas.split(counts), boxes, canvases):
        height, width = canvas.shape[-2:]
        # The image, in the coordinates of each crop: crop_resize of that box is the inverse cut.
        scale = size / (box[:, 2:] - box[:, :2]).clamp_min(1e-6)
        far = box.new_tensor([width, height])
        corner = torch.cat([-box[:, :2] * scale, (far - box[:, :2]) * scale], dim=1)
        whole = crop_resize(alpha, corner, torch.arange(len(box), device=box.device), (height, width))
        out.append(feather(whole, radius) if len(box) else whole)
    return crop_masks(out, boxes, size)


def merge_crops(canvases: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], patches: torch.Tensor,
                alphas: torch.Tensor, person_masks: Sequence[torch.Tensor]) -> None:
    """Paste ``patches`` (N, 3, S, S) with ``alphas`` (N, 1, S, S) into the (3, H, W) ``canvases`` in
    place, back to front: the person whose mask covers the fewest image pixels first (Zwick et al.)."""
    counts = [int(b.shape[0]) for b in boxes]
    for canvas, box, patch, alpha, masks in zip(canvases, boxes, patches.split(counts), alphas.split(counts),
                                                 person_masks):
        if len(box):  # nothing to paste (and kernels.coverage cannot reshape an empty batch)
            coverage_merge(canvas, patch, box, alpha, coverage(masks))


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One host generator per person. Host generators draw the same noise on every device, so a
    person's result does not depend on the GPU; the draws are latent-sized, a small copy each."""
    return [torch.Generator().manual_seed(seed) for seed in seeds]
