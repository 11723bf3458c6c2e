"""SMPL / SMPL-X through ``smplx`` as a ``BodyModel``, for users who hold their own licensed model files.

The files are licensed by the Max Planck Institute and are never bundled or downloaded here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import roma
import torch

from refsd_trt.avatar.attributes import generator
from refsd_trt.avatar.body_model import COCO_KEYPOINTS, BodyRegion, NamedPoses, joint_specs
from refsd_trt.avatar.records import AvatarParams, BodyOutput

ModelType = Literal["smpl", "smplx"]
_FILE_NAMES = {"smpl": "SMPL_{gender}.pkl", "smplx": "SMPLX_{gender}.npz"}
_SITES = {"smpl": "https://smpl.is.tue.mpg.de", "smplx": "https://smpl-x.is.tue.mpg.de"}

# SMPL is Y-up and faces +z with the person's left on +x; the body frame is y down, facing -z.
_SMPL_TO_BODY = torch.diag(torch.tensor([1.0, -1.0, -1.0]))

# Indices into ``body_pose`` joints (the SMPL kinematic tree minus the pelvis). SMPL's joint axes are
# those of its Y-up frame, so a knee bends about +x.
SMPL_JOINTS = joint_specs(("spine1", "spine3", "neck", "head", "left_shoulder", "right_shoulder", "left_elbow",
                           "right_elbow", "left_hip", "right_hip", "left_knee", "right_knee"))
_STANDING = {"left_shoulder": (0.0, 0.0, -1.2), "right_shoulder": (0.0, 0.0, 1.2)}  # T-pose -> arms down
_FITTING_START = {"left_hip": (-0.3, 0.0, 0.0), "right_hip": (-0.3, 0.0, 0.0),
                  "left_knee": (0.5, 0.0, 0.0), "right_knee": (0.5, 0.0, 0.0)}
_REGION_BY_JOINT = {
    "head": BodyRegion.HEAD, "neck": BodyRegion.HEAD, "jaw": BodyRegion.HEAD,
    "left_wrist": BodyRegion.HANDS, "right_wrist": BodyRegion.HANDS,
    "left_elbow": BodyRegion.FOREARMS, "right_elbow": BodyRegion.FOREARMS,
    "pelvis": BodyRegion.BOTTOM, "left_hip": BodyRegion.BOTTOM, "right_hip": BodyRegion.BOTTOM,
    "left_knee": BodyRegion.BOTTOM, "right_knee": BodyRegion.BOTTOM,
    "left_ankle": BodyRegion.FEET, "right_ankle": BodyRegion.FEET,
    "left_foot": BodyRegion.FEET, "right_foot": BodyRegion.FEET,
}  # anything else (spine, collars, shoulders) is TOP; hand and finger joints are HANDS
_SMPL_COCO = (24, 26, 25, 28, 27, 16, 17, 18, 19, 20, 21, 1, 2, 4, 5, 7, 8)  # smplx's SMPL joint output


class SmplModelFilesMissing(FileNotFoundError):
    """The licensed SMPL/SMPL-X model file is not where the user said."""


def expected_model_file(model_dir: str | Path, model_type: ModelType, gender: str) -> Path:
    return Path(model_dir) / model_type / _FILE_NAMES[model_type].format(gender=gender.upper())


class SmplBody(NamedPoses, torch.nn.Module):
    """SMPL (``model_type="smpl"``) or SMPL-X (``"smplx"``); ``model_dir`` holds ``smpl/SMPL_NEUTRAL.pkl``
    or ``smplx/SMPLX_NEUTRAL.npz`` (or the FEMALE/MALE files for ``gender``)."""

    standing_rotations = _STANDING
    fitting_start_rotations = _FITTING_START

    def __init__(self, model_dir: str | Path, model_type: ModelType = "smpl", gender: str = "neutral",
                 device: torch.device | str = "cpu"):
        super().__init__()
        path = expected_model_file(model_dir, model_type, gender)
        if not path.is_file():
            raise SmplModelFilesMissing(
                f"{model_type.upper()} body model file not found: expected {path}. These files are licensed "
                f"separately and never shipped: register at {_SITES[model_type]}, download the model, and "
                f"put {path.name} in {path.parent}/ (pass its parent folder {Path(model_dir)} as model_dir)."
            )
        import smplx

        self.model = smplx.create(str(model_dir), model_type=model_type, gender=gender).to(device)
        self.model_type = model_type
        names = _joint_names(model_type)
        self.joints = SMPL_JOINTS
        # body_pose starts at joint 1 (the pelvis is the global orientation).
        self._joint_slots = torch.tensor([names.index(j.name) - 1 for j in self.joints], device=device)
        self._coco = torch.tensor(
            _SMPL_COCO if model_type == "smpl" else [names.index(n) for n in COCO_KEYPOINTS], device=device
        )
        self.faces = torch.as_tensor(self.model.faces.astype("int64"), device=device)
        self.register_buffer("_to_body", _SMPL_TO_BODY.to(device), persistent=False)
        self.vertex_regions = _vertex_regions(self.model.lbs_weights, names)
        rest_joints = self.model().joints[0].detach()
        parents = self.model.parents.tolist()
        self.bone_directions = torch.stack([_bone_direction(rest_joints, parents, names.index(j.name))
                                            for j in self.joints])

    @property
    def device(self) -> torch.device:
        return self.faces.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.shapedirs.dtype

    def forward(self, params: AvatarParams) -> BodyOutput:
        output = self._smpl(params)
        keypoints = output.joints[:, self._coco]
        return BodyOutput(vertices=output.vertices, keypoints=keypoints, faces=self.faces)

    def keypoint_model(self, shape: torch.Tensor) -> Callable[[AvatarParams], torch.Tensor]:
        return lambda params: self._smpl(AvatarParams(params.global_orient, params.body_pose, shape)).joints[:, self._coco]

    def _smpl(self, params: AvatarParams):
        batch = len(params)
        full_pose = torch.zeros((batch, self.model.NUM_BODY_JOINTS, 3), device=self.device, dtype=self.dtype)
        full_pose = full_pose.index_copy(1, self._joint_slots, params.body_pose.to(self.dtype))
        output = self.model(betas=params.shape, body_pose=full_pose.flatten(1),
                            global_orient=torch.zeros((batch, 3), device=self.device, dtype=self.dtype))
        rotation = roma.rotvec_to_rotmat(params.global_orient) @ self._to_body
        output.vertices = output.vertices @ rotation.transpose(1, 2)
        output.joints = output.joints @ rotation.transpose(1, 2)
        return output

    def sample_shape(self, attributes: Mapping[str, str], seed: int) -> torch.Tensor:
        """Betas from a clipped standard normal: SMPL's shape space carries no attribute axes, so
        ``attributes`` (gender) choose the model file instead, at construction."""
        gen = generator(seed, stream=0)
        betas = torch.randn((self.model.num_betas,), generator=gen).clamp(-2, 2)
        return betas.to(self.device, self.dtype)



def _joint_names(model_type: ModelType) -> list[str]:
    from smplx.joint_names import JOINT_NAMES

    # SMPL-X's list starts with the 22 body joints SMPL shares; SMPL then has one joint per hand.
    return list(JOINT_NAMES[:22]) + ["left_hand", "right_hand"] if model_type == "smpl" else list(JOINT_NAMES)


def _bone_direction(joints: torch.Tensor, parents: list[int], index: int) -> torch.Tensor:
    children = [child for child, parent in enumerate(parents) if parent == index]
    direction = joints[children].mean(0) - joints[index] if children else joints.new_tensor([0.0, 1.0, 0.0])
    return torch.nn.functional.normalize(direction, dim=0)


def _vertex_regions(lbs_weights: torch.Tensor, names: list[str]) -> torch.Tensor:
    def region(name: str) -> int:
        if name in _REGION_BY_JOINT:
            return int(_REGION_BY_JOINT[name])
        if any(part in name for part in ("hand", "index", "middle", "pinky", "ring", "thumb")):
            return int(BodyRegion.HANDS)
        return int(BodyRegion.TOP)

    region_of_joint = torch.tensor([region(names[j]) for j in range(lbs_weights.shape[1])])
    return region_of_joint[lbs_weights.argmax(dim=1).cpu()].to(lbs_weights.device)
