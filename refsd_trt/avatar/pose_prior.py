"""A bounded prior that keeps fitted poses plausible when keypoints are few, noisy or ambiguous.

Per posable joint (``JointSpec``):
- an L2 pull of the axis-angle toward the rest pose, scaled by ``weight``, so that joints the
  keypoints do not constrain (occluded limbs, spine twist) stay at rest;
- an L2 on the twist (the rotation about the bone itself), scaled by ``twist_weight``: keypoints
  barely see a twist, yet it swings feet and forearms;
- a steep penalty past ``max_angle``, a joint-angle limit on the rotation's magnitude;
- for hinge joints (knees), a steep penalty on any rotation off the hinge axis and on bending backwards.
The penalties are quadratic, so the prior is smooth and the optimiser can cross a limit briefly.
"""

from __future__ import annotations

import functools

import torch

from refsd_trt.avatar.body_model import JointSpec

# The bounds are absolute, in the fitting loss's units (squared box heights): crossing a limit by
# 0.1 rad costs as much as a keypoint 10 % of the box height off. Only the pull toward rest scales
# with the caller's weight, which sets how far keypoints may pull a joint.
LIMIT_WEIGHT = 1.0
TWIST_WEIGHT = 1e-2


def pose_prior(body_pose: torch.Tensor, joints: tuple[JointSpec, ...], bone_directions: torch.Tensor,
               rest_weight: float) -> torch.Tensor:
    """(B, J, 3) axis-angles and (J, 3) unit bone directions -> (B,) prior energy."""
    weights, twist_weights, max_angles, hinge, other_axes = _terms(joints, body_pose.dtype, body_pose.device)
    angles = body_pose.norm(dim=-1)
    energy = rest_weight * (weights * body_pose.square().sum(-1)).sum(-1)
    energy = energy + TWIST_WEIGHT * (twist_weights * (body_pose * bone_directions).sum(-1).square()).sum(-1)
    energy = energy + LIMIT_WEIGHT * (angles - max_angles).clamp_min(0).square().sum(-1)
    # Hinge joints: any rotation off the hinge axis, and bending backwards (zero rows elsewhere).
    bend = (body_pose * hinge).sum(-1)
    return energy + LIMIT_WEIGHT * ((body_pose.square() * other_axes).sum((-1, -2)) + bend.clamp_max(0).square().sum(-1))


@functools.lru_cache(maxsize=8)
def _terms(joints: tuple[JointSpec, ...], dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The per-joint constants, built once rather than at every fitting step: weights, twist weights,
    angle limits (J,), the hinge axis one-hot and the other axes of hinge joints (J, 3)."""
    hinge = torch.zeros((len(joints), 3), dtype=dtype, device=device)
    other_axes = torch.zeros_like(hinge)
    for index, joint in enumerate(joints):
        if joint.hinge_axis is not None:
            hinge[index, joint.hinge_axis] = 1.0
            other_axes[index] = 1.0 - hinge[index]
    as_tensor = lambda values: torch.tensor(values, dtype=dtype, device=device)
    return (as_tensor([j.weight for j in joints]), as_tensor([j.twist_weight for j in joints]),
            as_tensor([j.max_angle for j in joints]), hinge, other_axes)
