"""``render``: avatars -> per-person shaded RGB, alpha and depth at crop resolution."""

from __future__ import annotations

from refsd_trt.avatar.rasterizer import Rasterizer, TorchRasterizer
from refsd_trt.avatar.records import Camera, Meshes, RenderOutput
from refsd_trt.avatar.shading import shade


def render(meshes: Meshes, cameras: Camera, size: tuple[int, int],
           rasterizer: Rasterizer | None = None) -> RenderOutput:
    """Render mesh i through camera i at (H, W) = ``size``; pass ``cameras.crop(boxes, size)`` to render
    each person's crop. ``rasterizer`` defaults to the portable ``TorchRasterizer``."""
    fragments = (rasterizer or TorchRasterizer())(meshes.vertices, meshes.faces, cameras, size)
    rgb = shade(fragments, cameras.to_camera(meshes.vertices), meshes.faces, meshes.colors)
    alpha = (fragments.face >= 0).to(rgb.dtype)
    return RenderOutput(
        rgb=rgb.permute(0, 3, 1, 2).contiguous(),
        alpha=alpha[:, None],
        depth=fragments.depth[:, None].to(rgb.dtype),
    )
