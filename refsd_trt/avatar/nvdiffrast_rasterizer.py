"""Optional nvdiffrast backend (GPU only; NVIDIA's licence is non-commercial: never a dependency).

A thin adapter onto the ``Rasterizer`` interface: same pixel-centre convention, same perspective-correct
barycentrics, so shading and compositing do not see which backend ran.
"""

from __future__ import annotations

import torch

from refsd_trt.avatar.rasterizer import NEAR, Fragments
from refsd_trt.avatar.records import Camera

FAR = 1e3


def nvdiffrast_available() -> bool:
    try:
        import nvdiffrast.torch  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


class NvdiffrastRasterizer:
    def __init__(self, device: torch.device | str = "cuda"):
        import nvdiffrast.torch as dr  # guarded: only constructed where nvdiffrast_available()

        self._dr = dr
        self._context = dr.RasterizeCudaContext(device=device)

    @torch.no_grad()
    def __call__(self, vertices: torch.Tensor, faces: torch.Tensor, camera: Camera,
                 size: tuple[int, int]) -> Fragments:
        height, width = size
        points = camera.to_camera(vertices)
        pixels = camera.project(vertices)
        z = points[..., 2:3]
        # nvdiffrast puts NDC y = -1 on image row 0, which matches OpenCV's downward y without a flip.
        ndc = torch.cat([2 * pixels[..., :1] / width - 1, 2 * pixels[..., 1:] / height - 1], dim=-1)
        ndc_z = (FAR + NEAR) / (FAR - NEAR) - 2 * FAR * NEAR / ((FAR - NEAR) * z)
        clip = torch.cat([ndc * z, ndc_z * z, z], dim=-1).float().contiguous()
        rast, _ = self._dr.rasterize(self._context, clip, faces.int().contiguous(), resolution=[height, width])
        u, v, triangle = rast[..., 0], rast[..., 1], rast[..., 3].long() - 1
        bary = torch.stack([u, v, 1 - u - v], dim=-1)
        covered = triangle >= 0
        corner_z = points[..., 2][torch.arange(points.shape[0], device=points.device)[:, None, None, None],
                                  faces[triangle.clamp_min(0)]]
        depth = torch.where(covered, (bary * corner_z).sum(-1), torch.zeros_like(u))
        return Fragments(face=triangle, bary=bary * covered[..., None], depth=depth)
