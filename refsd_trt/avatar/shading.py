"""Turns fragments into shaded colour: Lambert shading of per-vertex albedo under a fixed light.

The light sits above and slightly behind the camera so that avatars read as 3D (darker flanks,
lit fronts) without strong shadows for the diffusion stage to preserve; ambient keeps the sides legible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from refsd_trt.avatar.rasterizer import Fragments

AMBIENT = 0.4
LIGHT_DIRECTION = (0.0, -0.5, -1.0)  # camera frame, towards the light: up (-y) and towards the camera (-z)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(N, V, 3) area-weighted unit normals (orientation follows the face winding)."""
    corners = vertices[:, faces]  # (N, F, 3, 3)
    face_normals = torch.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0], dim=-1)
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals.index_add_(1, faces[:, corner], face_normals)
    return F.normalize(normals, dim=-1)


def interpolate(fragments: Fragments, faces: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """(N, V, C) per-vertex attributes -> (N, H, W, C) at the fragments (0 where uncovered)."""
    count = attributes.shape[0]
    face = fragments.face.clamp_min(0)
    per_corner = attributes[torch.arange(count, device=face.device)[:, None, None, None], faces[face]]
    values = (per_corner * fragments.bary[..., None]).sum(-2)
    return values * (fragments.face >= 0)[..., None]


def shade(fragments: Fragments, camera_vertices: torch.Tensor, faces: torch.Tensor,
          albedo: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) Lambert-shaded colour of camera-frame meshes with (N, V, 3) albedo."""
    normals = F.normalize(interpolate(fragments, faces, vertex_normals(camera_vertices, faces)), dim=-1)
    positions = interpolate(fragments, faces, camera_vertices)
    # Two-sided: flip normals that face away from the viewer, whatever the mesh's winding.
    facing = torch.where((normals * positions).sum(-1, keepdim=True) > 0, -normals, normals)
    light = F.normalize(camera_vertices.new_tensor(LIGHT_DIRECTION), dim=0)
    diffuse = (facing * light).sum(-1, keepdim=True).clamp_min(0)
    colour = interpolate(fragments, faces, albedo) * (AMBIENT + (1 - AMBIENT) * diffuse)
    return colour.clamp(0, 1)
