"""Rasterizer interface and the portable backend: a vectorised torch z-buffer rasterizer.

It runs wherever torch does (CPU and GPU) and is licence-free; it suits avatar crops (256-512 px,
a few thousand triangles). It is not differentiable: fitting works on keypoints, not on pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from refsd_trt.avatar.records import Camera

NEAR = 1e-3  # metres: triangles with a vertex closer than this are dropped, not clipped


@dataclass
class Fragments:
    """The front-most triangle at each pixel centre."""

    face: torch.Tensor  # (N, H, W) int64 face index, -1 where nothing covers the pixel
    bary: torch.Tensor  # (N, H, W, 3) perspective-correct barycentric weights of the face's vertices
    depth: torch.Tensor  # (N, H, W) camera-space z, 0 where nothing covers the pixel


class Rasterizer(Protocol):
    def __call__(self, vertices: torch.Tensor, faces: torch.Tensor, camera: Camera,
                 size: tuple[int, int]) -> Fragments:
        """(N, V, 3) body-frame vertices and (F, 3) faces seen by ``camera`` at (H, W) = ``size``."""
        ...


class TorchRasterizer:
    """Enumerates, per triangle, the pixel centres inside its bounding box, tests them with edge
    functions and keeps the nearest per pixel with a scatter-min. Work scales with the summed
    bounding-box areas, so it is processed in chunks of at most ``max_pairs`` (triangle, pixel) pairs."""

    def __init__(self, max_pairs: int = 1 << 20):
        self.max_pairs = max_pairs

    @torch.no_grad()
    def __call__(self, vertices: torch.Tensor, faces: torch.Tensor, camera: Camera,
                 size: tuple[int, int]) -> Fragments:
        count, height, width = vertices.shape[0], size[0], size[1]
        device = vertices.device
        points = camera.to_camera(vertices)
        pixels = camera.project(vertices)
        num_faces = faces.shape[0]
        tri_xy = pixels[:, faces]  # (N, F, 3, 2)
        tri_z = points[..., 2][:, faces]  # (N, F, 3)

        # A pixel (i, j) is sampled at its centre (j + 0.5, i + 0.5).
        low = torch.ceil(tri_xy.amin(2) - 0.5).clamp_min(0).long()
        high = torch.floor(tri_xy.amax(2) - 0.5).long()
        high = torch.minimum(high, torch.tensor([width - 1, height - 1], device=device))
        span = (high - low + 1).clamp_min(0)
        area = _edge(tri_xy[..., 0, :], tri_xy[..., 1, :], tri_xy[..., 2, :])
        visible = (tri_z.amin(-1) > NEAR) & (area.abs() > 1e-12)
        pair_counts = (span[..., 0] * span[..., 1] * visible).flatten()  # (N*F,)

        zbuffer = torch.full((count * height * width,), float("inf"), device=device, dtype=points.dtype)
        face_buffer = torch.full((count * height * width,), -1, device=device, dtype=torch.long)
        bary_buffer = torch.zeros((count * height * width, 3), device=device, dtype=points.dtype)
        triangles = torch.nonzero(pair_counts).squeeze(1)
        for chunk in _chunks(triangles, pair_counts[triangles], self.max_pairs):
            counts = pair_counts[chunk]
            owner = torch.repeat_interleave(chunk, counts)  # flat (person, face) per pair
            offset = torch.arange(owner.shape[0], device=device) - torch.repeat_interleave(
                torch.cumsum(counts, 0) - counts, counts
            )
            person, face = owner // num_faces, owner % num_faces
            span_x = span[person, face, 0]
            px = low[person, face, 0] + offset % span_x
            py = low[person, face, 1] + offset // span_x
            centre = torch.stack([px, py], dim=1).to(points.dtype) + 0.5
            corners = tri_xy[person, face]
            # Screen-space barycentrics from edge functions; dividing by the signed area makes
            # both windings positive inside.
            screen = torch.stack([
                _edge(corners[:, 1], corners[:, 2], centre),
                _edge(corners[:, 2], corners[:, 0], centre),
                _edge(corners[:, 0], corners[:, 1], centre),
            ], dim=1) / area[person, face, None]
            inside = (screen >= 0).all(dim=1)
            # Perspective-correct interpolation: 1/z is affine in screen space.
            inverse_z = screen / tri_z[person, face]
            depth = 1.0 / inverse_z.sum(1)
            bary = inverse_z * depth[:, None]
            target = (person * height + py) * width + px
            target, depth, bary, face = target[inside], depth[inside], bary[inside], face[inside]
            zbuffer.scatter_reduce_(0, target, depth, "amin")
            nearest = depth <= zbuffer[target]
            # Equal depths (shared edges, coplanar faces): keep the highest face index, deterministically.
            ties = torch.full_like(face_buffer, -1).scatter_reduce_(0, target[nearest], face[nearest], "amax")
            winner = nearest.clone()
            winner[nearest] = face[nearest] == ties[target[nearest]]
            face_buffer[target[winner]] = face[winner]
            bary_buffer[target[winner]] = bary[winner]

        covered = face_buffer >= 0
        depth = torch.where(covered, zbuffer, torch.zeros_like(zbuffer))
        return Fragments(
            face=face_buffer.view(count, height, width),
            bary=bary_buffer.view(count, height, width, 3),
            depth=depth.view(count, height, width),
        )


def _edge(a: torch.Tensor, b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Twice the signed area of (a, b, p)."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


def _chunks(items: torch.Tensor, sizes: torch.Tensor, budget: int):
    """Consecutive slices of ``items`` whose ``sizes`` sum to at most ``budget`` (or one item if larger)."""
    ends = torch.cumsum(sizes, 0)
    start = 0
    while start < items.shape[0]:
        base = ends[start - 1] if start else 0
        stop = int(torch.searchsorted(ends, base + budget, right=True))
        stop = max(stop, start + 1)
        yield items[start:stop]
        start = stop
