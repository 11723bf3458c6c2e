"""Axis-angle to rotation matrix in few tensor ops: the fitting loop calls it twice per step, where
op count (not arithmetic) is the cost on a CPU."""

from __future__ import annotations

import math

import torch

# K(v) = v_x G_x + v_y G_y + v_z G_z: the cross-product (skew) matrix of v as one product.
_GENERATORS = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]],
                            [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]],
                            [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])


def rotvec_to_rotmat(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angles -> (..., 3, 3) rotations, Rodrigues' formula in the unnormalised form
    R = I + sinc(t) K + (1 - cos t) / t^2 K^2 (t = |v|, K = K(v)): exact and smooth through t = 0,
    where the gradient is that of I + K."""
    angle = rotvec.norm(dim=-1)[..., None, None]
    skew = (rotvec[..., :, None, None] * _GENERATORS.to(rotvec)).sum(-3)
    half = torch.sinc(angle / (2 * math.pi))  # sin(t/2) / (t/2)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + torch.sinc(angle / math.pi) * skew + 0.5 * half.square() * (skew @ skew)
