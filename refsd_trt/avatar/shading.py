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
    """(N, V, C) per-vertex attributes -> (N, H, W, C) at the fragments (0 where uncovered). Only
    covered pixels are computed: a person fills a fraction of their crop."""
    person, row, col = torch.nonzero(fragments.face >= 0, as_tuple=True)
    corners = faces[fragments.face[person, row, col]]  # (P, 3)
    values = (attributes[person[:, None], corners] * fragments.bary[person, row, col, :, None]).sum(1)
    output = attributes.new_zeros((*fragments.face.shape, attributes.shape[-1]))
    output[person, row, col] = values
    return output


def shade(fragments: Fragments, camera_vertices: torch.Tensor, faces: torch.Tensor,
          albedo: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) Lambert-shaded colour of camera-frame meshes with (N, V, 3) albedo."""
    stacked = torch.cat([vertex_normals(camera_vertices, faces), camera_vertices, albedo.to(camera_vertices)], -1)
    normals, positions, colour = interpolate(fragments, faces, stacked).split(3, dim=-1)
    normals = F.normalize(normals, dim=-1)
    # Two-sided: flip normals that face away from the viewer, whatever the mesh's winding.
    facing = torch.where((normals * positions).sum(-1, keepdim=True) > 0, -normals, normals)
    light = F.normalize(camera_vertices.new_tensor(LIGHT_DIRECTION), dim=0)
    diffuse = (facing * light).sum(-1, keepdim=True).clamp_min(0)
    return (colour * (AMBIENT + (1 - AMBIENT) * diffuse)).clamp(0, 1)
