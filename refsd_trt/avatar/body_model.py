"""The interface every body model backend (Anny, SMPL/SMPL-X) offers to fitting and rendering."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, runtime_checkable

import torch

from refsd_trt.avatar.records import AvatarParams, BodyOutput

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip


class BodyRegion(IntEnum):
    """Vertex regions that clothing colours are assigned to."""

    HEAD = 0
    HANDS = 1
    TOP = 2
    FOREARMS = 3
    BOTTOM = 4
    FEET = 5


@dataclass(frozen=True)
class JointSpec:
    """One posable joint and the bounds of the pose prior on it (see ``pose_prior``).

    ``hinge_axis`` names the only axis (0, 1, 2 in the model's joint axes) the joint may bend about,
    and only with positive angles (knees); ``None`` allows any axis up to ``max_angle``.
    """

    name: str
    max_angle: float  # radians
    weight: float  # L2 pull toward the rest pose
    twist_weight: float = 0.0  # extra L2 on the rotation about the bone's own direction
    hinge_axis: int | None = None


# The pose prior's bounds per joint, shared by every body model (each names its own bones): the spine
# and neck are stiff so that the body's yaw goes to the global orientation rather than into a twisted
# torso; limbs are free within their limits but resist twisting about themselves; knees are hinges.
_JOINT_BOUNDS = (
    ("spine_lower", {"max_angle": 0.5, "weight": 20.0}),
    ("spine_upper", {"max_angle": 0.5, "weight": 20.0}),
    ("neck", {"max_angle": 0.6, "weight": 5.0}),
    ("head", {"max_angle": 0.6, "weight": 5.0}),
    ("left_upper_arm", {"max_angle": 2.8, "weight": 0.1, "twist_weight": 2.0}),
    ("right_upper_arm", {"max_angle": 2.8, "weight": 0.1, "twist_weight": 2.0}),
    ("left_forearm", {"max_angle": 2.6, "weight": 0.1, "twist_weight": 2.0}),
    ("right_forearm", {"max_angle": 2.6, "weight": 0.1, "twist_weight": 2.0}),
    ("left_thigh", {"max_angle": 2.0, "weight": 0.2, "twist_weight": 5.0}),
    ("right_thigh", {"max_angle": 2.0, "weight": 0.2, "twist_weight": 5.0}),
    ("left_shin", {"max_angle": 2.6, "weight": 0.2, "hinge_axis": 0}),
    ("right_shin", {"max_angle": 2.6, "weight": 0.2, "hinge_axis": 0}),
)


def joint_specs(bone_names: tuple[str, ...]) -> tuple[JointSpec, ...]:
    """The shared joint bounds for a body model whose bones for the joints above, in that order,
    are ``bone_names``."""
    if len(bone_names) != len(_JOINT_BOUNDS):
        raise ValueError(f"expected {len(_JOINT_BOUNDS)} bone names, got {len(bone_names)}")
    return tuple(JointSpec(name, **bounds) for name, (_, bounds) in zip(bone_names, _JOINT_BOUNDS))


def joint_pose(joints: tuple[JointSpec, ...], rotations: Mapping[str, tuple[float, float, float]], batch: int,
               device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(batch, J, 3) axis-angles: ``rotations`` by joint name, zero (rest) for the other joints."""
    pose = torch.zeros((len(joints), 3), device=device, dtype=dtype)
    for index, joint in enumerate(joints):
        if joint.name in rotations:
            pose[index] = torch.tensor(rotations[joint.name])
    return pose.expand(batch, -1, -1).clone()


class NamedPoses:
    """``standing_pose`` and ``fitting_start_pose`` for a body model that names, per joint, the
    rotations of those two poses in ``standing_rotations`` and ``fitting_start_rotations``."""

    joints: tuple[JointSpec, ...]
    standing_rotations: Mapping[str, tuple[float, float, float]]
    fitting_start_rotations: Mapping[str, tuple[float, float, float]]

    def standing_pose(self, batch: int) -> torch.Tensor:
        return joint_pose(self.joints, self.standing_rotations, batch, self.device, self.dtype)

    def fitting_start_pose(self, batch: int) -> torch.Tensor:
        return joint_pose(self.joints, self.fitting_start_rotations, batch, self.device, self.dtype)


@runtime_checkable
class BodyModel(Protocol):
    """A batched parametric body: ``AvatarParams`` -> vertices, faces and COCO-17 keypoints."""

    joints: tuple[JointSpec, ...]  # the posable joints, in ``AvatarParams.body_pose`` order
    bone_directions: torch.Tensor  # (J, 3) unit direction of each joint's bone at rest, in its joint axes
    faces: torch.Tensor  # (F, 3) int64
    vertex_regions: torch.Tensor  # (V,) int64 ``BodyRegion`` per vertex

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def __call__(self, params: AvatarParams) -> BodyOutput: ...

    def keypoint_model(self, shape: torch.Tensor) -> Callable[[AvatarParams], torch.Tensor]:
        """For a fixed (B, S) ``shape``: params -> (B, 17, 3) keypoints, as cheap as the backend can
        make them (fitting loops call it every step; ``params.shape`` is ignored)."""
        ...

    def sample_shape(self, attributes: Mapping[str, str], seed: int) -> torch.Tensor:
        """(S,) shape parameters drawn from ``attributes`` (age group, gender) and ``seed``, never
        measured from the person: the avatar must not carry their body shape."""
        ...

    def standing_pose(self, batch: int) -> torch.Tensor:
        """(batch, J, 3) a relaxed standing pose (arms down) for people without keypoints."""
        ...

    def fitting_start_pose(self, batch: int) -> torch.Tensor:
        """(batch, J, 3) where keypoint fitting starts the body pose."""
        ...


def rest_params(body: BodyModel, shape: torch.Tensor) -> AvatarParams:
    """Identity orientation and rest pose for each row of ``shape`` (B, S)."""
    batch = shape.shape[0]
    zeros = torch.zeros((batch, 3), device=shape.device, dtype=shape.dtype)
    return AvatarParams(zeros, torch.zeros((batch, len(body.joints), 3), device=shape.device,
                                           dtype=shape.dtype), shape)
