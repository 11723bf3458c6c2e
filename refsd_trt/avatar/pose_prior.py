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
    weights = body_pose.new_tensor([j.weight for j in joints])
    twist_weights = body_pose.new_tensor([j.twist_weight for j in joints])
    max_angles = body_pose.new_tensor([j.max_angle for j in joints])
    angles = body_pose.norm(dim=-1)
    energy = rest_weight * (weights * body_pose.square().sum(-1)).sum(-1)
    energy = energy + TWIST_WEIGHT * (twist_weights * (body_pose * bone_directions).sum(-1).square()).sum(-1)
    energy = energy + LIMIT_WEIGHT * (angles - max_angles).clamp_min(0).square().sum(-1)
    for index, joint in enumerate(joints):
        if joint.hinge_axis is None:
            continue
        off_axis = [axis for axis in range(3) if axis != joint.hinge_axis]
        bend = body_pose[:, index, joint.hinge_axis]
        energy = energy + LIMIT_WEIGHT * (
            body_pose[:, index, off_axis].square().sum(-1) + bend.clamp_max(0).square()
        )
    return energy
