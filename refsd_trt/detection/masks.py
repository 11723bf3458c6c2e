"""Instance masks from YOLO-seg prototypes, at the original image's full resolution, on the device.

This is ultralytics' ``retina_masks=True`` path (``process_mask_native``): the mask logits
``coefficients @ prototypes`` are cut to the letterbox's content area and resized straight to the
original image, rather than thresholded at letterbox resolution and then scaled (the default
path, which gives blockier edges at the sizes the pipeline pastes at). A logit above 0 is a
sigmoid above 0.5, so the sigmoid is never computed. Pixels outside the person's box are cleared.

One deliberate difference from ultralytics: a person whose mask comes out empty keeps its
detection with the whole box as mask (ultralytics drops it), because a missed person is a privacy
failure and a box mask is the conservative cover.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from refsd_trt.detection.letterbox import Placement
from refsd_trt.types import PersonDetections

# Float elements of upsampled logits processed at once: bounds the transient memory when an
# image has many people (a 4K frame is 8.3 M pixels per person).
CHUNK_ELEMENTS = 64_000_000


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, height, width) bool: the pixels whose index lies in [x1, x2) × [y1, y2), ultralytics'
    ``crop_mask`` convention."""
    x1, y1, x2, y2 = boxes[:, :, None].unbind(1)  # each (n, 1)
    cols = torch.arange(width, device=boxes.device, dtype=boxes.dtype)[None]
    rows = torch.arange(height, device=boxes.device, dtype=boxes.dtype)[None]
    inside_x = (cols >= x1) & (cols < x2)  # (n, width)
    inside_y = (rows >= y1) & (rows < y2)  # (n, height)
    return inside_y[:, :, None] & inside_x[:, None, :]


def removal_masks(detections: PersonDetections) -> torch.Tensor:
    """(n, H, W) bool: what removing each person must cover. Masks not made by a segmentation model
    (GrabCut guesses, box-only detectors) miss ears, hair and hands often enough that the box goes
    with them; an empty segmentation mask is its box."""
    masks = detections.masks
    boxes = box_masks(detections.boxes, *masks.shape[-2:])
    if detections.mask_source != "segmentation":
        return masks | boxes
    return torch.where(masks.flatten(1).any(1)[:, None, None], masks, boxes)


def prototype_masks(protos: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor,
                    placement: Placement, input_shape: tuple[int, int]) -> torch.Tensor:
    """``protos`` (nm, mh, mw) of one image, ``coefficients`` (n, nm), ``boxes`` (n, 4) in the
    original image's pixels -> (n, H, W) bool at the original size."""
    height, width = placement.size
    n, (nm, mh, mw) = coefficients.shape[0], protos.shape
    out = torch.empty((n, height, width), dtype=torch.bool, device=protos.device)
    if n == 0:
        return out
    # Prototypes are at 1/(input/proto) of the letterbox. Upsample them by the smallest factor
    # (1, 2 or 4) that puts the content area's edges on whole pixels, then crop and resize.
    stride = input_shape[0] // mh
    (left, top), (rh, rw) = placement.offset, placement.resized
    edges = top | left | (top + rh) | (left + rw)
    factor = stride // math.gcd(stride, edges)
    y0, y1 = top * factor // stride, (top + rh) * factor // stride
    x0, x1 = left * factor // stride, (left + rw) * factor // stride
    logits = (coefficients.float() @ protos.float().view(nm, -1)).view(1, n, mh, mw)
    per_chunk = max(1, CHUNK_ELEMENTS // (height * width + factor * factor * mh * mw))
    for start in range(0, n, per_chunk):
        part = logits[:, start:start + per_chunk]
        if factor > 1:
            part = F.interpolate(part, scale_factor=factor, mode="bilinear")
        part = F.interpolate(part[..., y0:y1, x0:x1], size=(height, width), mode="bilinear")
        torch.gt(part[0], 0, out=out[start:start + per_chunk])
    inside = box_masks(boxes, height, width)
    out &= inside
    empty = ~out.flatten(1).any(1)
    return torch.where(empty[:, None, None], inside, out)
