"""Detections in, per-person avatar renders out: the entry point the pipeline calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from refsd_trt.avatar.body_model import BodyModel
from refsd_trt.avatar.clothing import clothing_palette, vertex_colors
from refsd_trt.avatar.fitting import (
    DEFAULT_FIT,
    FitResult,
    FitSettings,
    ImageSizes,
    fit_boxes,
    fit_keypoints,
    image_sizes,
)
from refsd_trt.avatar.rasterizer import Rasterizer
from refsd_trt.avatar.records import AvatarParams, Camera, Meshes, RenderOutput
from refsd_trt.avatar.render import render
from refsd_trt.types import PersonDetections

MIN_KEYPOINTS = 6  # fewer confident keypoints than this cannot pin a pose: use the box instead


@dataclass
class AvatarRenders:
    render: RenderOutput  # (N, C, S, S) per person
    crop_boxes: torch.Tensor  # (N, 4) xyxy image pixels each render covers (square, may leave the image)
    fit: FitResult


def crop_boxes(boxes: torch.Tensor, margin: float = 0.15) -> torch.Tensor:
    """Square boxes around (N, 4) xyxy ``boxes``, ``margin`` of the longer side wider on each side, so
    that limbs the pose puts outside the detection box still land in the crop."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1, keepdim=True) * (0.5 + margin)
    return torch.cat([centre - half, centre + half], dim=1)


def fit_avatars(
    body: BodyModel, boxes: torch.Tensor, image_size: ImageSizes, shapes: torch.Tensor,
    keypoints: torch.Tensor | None = None, settings: FitSettings = DEFAULT_FIT,
) -> FitResult:
    """Keypoint fits for people with at least ``MIN_KEYPOINTS`` confident keypoints, standing poses
    in their boxes for the rest; the people may come from several images (``ImageSizes``)."""
    sizes = image_sizes(image_size, boxes.shape[0], boxes.device)
    result = fit_boxes(body, boxes, sizes, shapes)
    if keypoints is None:
        return result
    enough = (keypoints[..., 2] >= settings.min_confidence).sum(-1) >= MIN_KEYPOINTS
    if enough.any():
        fitted = fit_keypoints(body, keypoints[enough], boxes[enough], sizes[enough], shapes[enough],
                               settings=settings)
        # The shapes are the inputs in both fits: only pose and placement differ.
        result.params.global_orient[enough] = fitted.params.global_orient
        result.params.body_pose[enough] = fitted.params.body_pose
        result.camera.translation[enough] = fitted.camera.translation
        result.reprojection_px[enough] = fitted.reprojection_px
    return result


def avatar_meshes(body: BodyModel, params: AvatarParams, attributes: Sequence[Mapping[str, str]],
                  seeds: Sequence[int]) -> Meshes:
    with torch.no_grad():
        output = body(params)
    palettes = torch.stack([clothing_palette(a, s) for a, s in zip(attributes, seeds, strict=True)])
    colors = vertex_colors(body.vertex_regions, palettes).to(output.vertices)
    return Meshes(output.vertices, output.faces, colors)


def render_avatars(
    detections: PersonDetections, image_size: tuple[int, int], attributes: Sequence[Mapping[str, str]],
    seeds: Sequence[int], body: BodyModel | None = None, crop_size: int = 384,
    rasterizer: Rasterizer | None = None, settings: FitSettings = DEFAULT_FIT, supersample: int = 1,
) -> AvatarRenders:
    """One avatar per detected person: shape and clothing sampled from that person's ``attributes``
    and ``seed``, pose fitted to their keypoints (or standing in their box), rendered in a square
    ``crop_size`` crop around their box (``supersample``: see ``render``)."""
    if body is None:
        from refsd_trt.avatar.anny_body import anny_body

        body = anny_body(device=str(detections.boxes.device))
    boxes = detections.boxes.to(body.device, body.dtype)
    shapes = torch.stack([body.sample_shape(a, s) for a, s in zip(attributes, seeds, strict=True)])
    keypoints = None if detections.keypoints is None else detections.keypoints.to(body.device, body.dtype)
    fit = fit_avatars(body, boxes, image_size, shapes, keypoints, settings)
    crops = crop_boxes(boxes)
    size = (crop_size, crop_size)
    camera: Camera = fit.camera.crop(crops, size)
    output = render(avatar_meshes(body, fit.params, attributes, seeds), camera, size, rasterizer, supersample)
    return AvatarRenders(render=output, crop_boxes=crops, fit=fit)
