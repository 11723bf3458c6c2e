"""``render``: avatars -> per-person shaded RGB, alpha and depth at crop resolution."""

from __future__ import annotations

from dataclasses import replace

import torch.nn.functional as F

from refsd_trt.avatar.rasterizer import Rasterizer, TorchRasterizer
from refsd_trt.avatar.records import Camera, Meshes, RenderOutput
from refsd_trt.avatar.shading import shade


def render(meshes: Meshes, cameras: Camera, size: tuple[int, int],
           rasterizer: Rasterizer | None = None, supersample: int = 1) -> RenderOutput:
    """Render mesh i through camera i at (H, W) = ``size``; pass ``cameras.crop(boxes, size)`` to render
    each person's crop. ``rasterizer`` defaults to the portable ``TorchRasterizer``.

    ``supersample`` > 1 renders that many samples per pixel along each axis and averages them: alpha
    becomes fractional coverage at the edges (anti-aliasing), rgb the mean colour of the covered
    samples and depth their mean depth, so compositing ``rgb * alpha + background * (1 - alpha)`` holds.
    """
    height, width = size[0] * supersample, size[1] * supersample
    # Scaling the focal length and principal point maps each output pixel onto a block of samples.
    fine = replace(cameras, focal=cameras.focal * supersample, principal=cameras.principal * supersample)
    fragments = (rasterizer or TorchRasterizer())(meshes.vertices, meshes.faces, fine, (height, width))
    rgb = shade(fragments, fine.to_camera(meshes.vertices), meshes.faces, meshes.colors).permute(0, 3, 1, 2)
    alpha = (fragments.face >= 0).to(rgb.dtype)[:, None]
    depth = fragments.depth[:, None].to(rgb.dtype)
    if supersample > 1:
        alpha_sum = F.avg_pool2d(alpha, supersample)
        covered = alpha_sum.clamp_min(1e-6)
        rgb = F.avg_pool2d(rgb * alpha, supersample) / covered  # shade() leaves uncovered samples black
        depth = F.avg_pool2d(depth, supersample) / covered
        alpha = alpha_sum
    return RenderOutput(rgb=rgb.contiguous(), alpha=alpha, depth=depth)
