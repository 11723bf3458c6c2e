"""Anny (NAVER, Apache-2.0, shipped with its data) as a ``BodyModel``: the embedded default."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import roma
import torch

from refsd_trt.avatar.attributes import age_group, gender, generator, uniform
from refsd_trt.avatar.body_model import COCO_KEYPOINTS, BodyRegion, NamedPoses, joint_specs
from refsd_trt.avatar.posed_chain import PosedChain
from refsd_trt.avatar.records import AvatarParams, BodyOutput
from refsd_trt.avatar.rotations import rotvec_to_rotmat

# Anny is Z-up, facing -y, with the person's left on +x; the body frame is OpenCV-like (y down, facing -z).
_ANNY_TO_BODY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

# Anny's "local-ref" pose deltas rotate a bone about its head in world-aligned axes (x: the person's
# left, y: backwards, z: up), so one set of bounds serves both sides: a knee bends about +x.
ANNY_JOINTS = joint_specs(("spine04", "spine02", "neck01", "head", "upperarm01.L", "upperarm01.R",
                           "lowerarm01.L", "lowerarm01.R", "upperleg01.L", "upperleg01.R",
                           "lowerleg01.L", "lowerleg01.R"))

# Rest is an A-pose (arms about 55 degrees from the body); rotating the upper arms about y brings
# them down to a relaxed stance, mirrored for the right arm.
_STANDING = {"upperarm01.L": (0.0, 0.65, 0.0), "upperarm01.R": (0.0, -0.65, 0.0),
             "lowerarm01.L": (0.0, 0.1, 0.0), "lowerarm01.R": (0.0, -0.1, 0.0)}

# Fitting starts with knees and hips slightly flexed: at a straight knee the hinge bound leaves no
# gradient toward bending, and from a straight leg the fit settles for a splayed thigh rather than
# the flexed one that people mostly show.
_FITTING_START = {"upperleg01.L": (-0.3, 0.0, 0.0), "upperleg01.R": (-0.3, 0.0, 0.0),
                  "lowerleg01.L": (0.5, 0.0, 0.0), "lowerleg01.R": (0.5, 0.0, 0.0)}

_REGION_BY_BONE_PREFIX = (
    (("head", "neck", "eye"), BodyRegion.HEAD),
    (("wrist", "finger", "metacarpal"), BodyRegion.HANDS),
    (("lowerarm",), BodyRegion.FOREARMS),
    (("upperarm", "shoulder", "clavicle", "spine"), BodyRegion.TOP),
    (("root", "pelvis", "upperleg", "lowerleg"), BodyRegion.BOTTOM),
    (("foot", "toe"), BodyRegion.FEET),
)

# Uniform ranges per attribute value; phenotypes not listed are drawn from _DEFAULT_RANGE. Anny's age
# runs through baby (0), child (1/3), young adult (2/3) and old (1); its young adults at height 0.5
# are tall (1.91 m male, 1.77 m female), so heights are drawn below the middle.
_AGE_RANGE = {"child": (0.22, 0.32), "teen": (0.45, 0.55), "adult": (0.6, 0.8), "senior": (0.85, 1.0)}
_GENDER_RANGE = {"male": (0.0, 0.12), "female": (0.88, 1.0), "unknown": (0.35, 0.65)}  # 0 male, 1 female
_HEIGHT_RANGE = (0.2, 0.5)
_DEFAULT_RANGE = (0.35, 0.65)
WAIST_HEIGHT = 0.3  # of the way from the hip keypoints up to the shoulders


class AnnyBody(NamedPoses, torch.nn.Module):
    """Anny at a chosen topology; the low-poly ``notoes_collapse10pc`` (1,229 vertices) suffices at
    crop resolution and is the default."""

    standing_rotations = _STANDING
    fitting_start_rotations = _FITTING_START

    def __init__(self, topology: str = "notoes_collapse10pc", device: torch.device | str = "cpu"):
        super().__init__()
        import anny

        self.model = anny.Anny(topology=topology).float().to(device)
        self.joints = ANNY_JOINTS
        labels = self.model.bone_labels
        self._joint_bones = torch.tensor([labels.index(j.name) for j in self.joints], device=device)
        self.faces = self.model.get_triangular_faces()
        self.register_buffer("_coco_weights", _coco_regressor(self.model).float(), persistent=False)
        self.register_buffer("_to_body", _ANNY_TO_BODY.to(device), persistent=False)
        self.vertex_regions = _vertex_regions(self.model, self._coco_weights)
        self.phenotype_labels = tuple(self.model.phenotype_labels)
        self.bone_directions = _bone_directions(self.model, self._joint_bones)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def forward(self, params: AvatarParams) -> BodyOutput:
        output = self.model(pose_parameters=self._bone_deltas(params.body_pose), phenotype_kwargs=params.shape)
        vertices = output["vertices"] @ self._orientation(params.global_orient).transpose(1, 2)
        keypoints = torch.einsum("kv,bvd->bkd", self._coco_weights, vertices)
        return BodyOutput(vertices=vertices, keypoints=keypoints, faces=self.faces)

    def keypoint_model(self, shape: torch.Tensor) -> Callable[[AvatarParams], torch.Tensor]:
        """Skinning is linear in the rest vertices, so each COCO keypoint is a fixed blend of bone
        transforms applied to per-bone anchor points that depend on the shape only. Bones between
        the posable joints move with their nearest posed ancestor (``PosedChain``), so their anchors
        fold into that joint's: a fitting step costs the kinematics of the 12 posable joints alone."""
        with torch.no_grad():
            rest = self.model(phenotype_kwargs=shape)
            rest_poses = rest["rest_bone_poses"]
            bones = len(self.model.bone_labels)
            skin = torch.zeros((self.model.template_vertices.shape[0], bones), device=self.device, dtype=self.dtype)
            skin.scatter_add_(1, self.model.vertex_bone_indices, self.model.vertex_bone_weights.to(self.dtype))
            homogeneous = torch.nn.functional.pad(rest["rest_vertices"], (0, 1), value=1.0)
            anchors = torch.einsum("kv,vj,bvd->bkjd", self._coco_weights, skin, homogeneous)
            zero = torch.eye(4, device=self.device, dtype=self.dtype).expand(rest_poses.shape[0], bones, 4, 4)
            zero_transforms, zero_poses = self.model.get_bone_transforms(zero, rest_poses)
            chain = PosedChain(self.model.bone_parents, self._joint_bones.tolist(), rest_poses, zero_poses,
                               self.model.reference_bone_orientations)
            # Each bone's anchors carried by its zero-delta transform, summed per group (posed joint or root).
            carried = torch.einsum("bjxy,bkjy->bkjx", zero_transforms, anchors)
            group = torch.tensor([g if g >= 0 else len(self.joints) for g in chain.group], device=self.device)
            folded = carried.new_zeros((*carried.shape[:2], len(self.joints) + 1, 4)).index_add_(2, group, carried)
            folded = folded.flatten(2)  # (B, K, (J + 1) * 4)

        def keypoints(params: AvatarParams) -> torch.Tensor:
            motions = chain.motions(rotvec_to_rotmat(params.body_pose))  # (B, J + 1, 3, 4)
            # (B, K, (J+1)*4) @ (B, (J+1)*4, 3): one batched matmul (einsum picks a far slower path here).
            points = folded @ motions.transpose(-1, -2).reshape(motions.shape[0], -1, 3)
            return points @ self._orientation(params.global_orient).transpose(1, 2)

        return keypoints

    def _bone_deltas(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, J, 3) axis-angles of the posable joints -> (B, bones, 4, 4) Anny deltas (identity elsewhere)."""
        eye = torch.eye(4, device=self.device, dtype=self.dtype)
        deltas = eye.repeat(body_pose.shape[0], len(self.model.bone_labels), 1, 1)
        deltas[:, self._joint_bones, :3, :3] = rotvec_to_rotmat(body_pose)
        return deltas

    def _orientation(self, global_orient: torch.Tensor) -> torch.Tensor:
        """(B, 3, 3) Anny frame -> body frame, then the global orientation."""
        return rotvec_to_rotmat(global_orient) @ self._to_body

    def sample_shape(self, attributes: Mapping[str, str], seed: int) -> torch.Tensor:
        gen = generator(seed, stream=0)
        ranges = {"age": _AGE_RANGE[age_group(attributes)], "gender": _GENDER_RANGE[gender(attributes)],
                  "height": _HEIGHT_RANGE}
        values = [uniform(gen, *ranges.get(label, _DEFAULT_RANGE)) for label in self.phenotype_labels]
        return torch.tensor(values, device=self.device, dtype=self.dtype)



@functools.lru_cache(maxsize=4)
def anny_body(topology: str = "notoes_collapse10pc", device: str = "cpu") -> AnnyBody:
    """A shared ``AnnyBody``: building one reads about 0.4 s of cached data (60 s the very first time)."""
    return AnnyBody(topology=topology, device=device).eval()


def _coco_regressor(model) -> torch.Tensor:
    """(17, V) COCO keypoint weights on ``model``'s vertices.

    Anny's COCO regressor is defined on the MakeHuman base mesh; ``KeypointsRegressor.coco`` only
    works for topologies that keep base-mesh vertices. For any topology, move each base vertex's
    weight to its nearest model vertex at rest: on the 1,229-vertex mesh this shifts a keypoint by
    under 6 mm.
    """
    from anny.paths import get_anny_root_dir
    from anny.utils.obj_utils import load_obj_file

    root = get_anny_root_dir()
    base_vertices, _, _ = load_obj_file(str(root / "data/mpfb2/3dobjs/base.obj"), dtype=torch.float64)
    # The same world transform Anny applies when it loads the base mesh (Z up, metres).
    to_world = roma.Linear(0.1 * roma.euler_to_rotmat("X", [90], degrees=True, dtype=torch.float64))[None]
    base_vertices = to_world.apply(base_vertices)
    template = model.template_vertices.detach().to("cpu", torch.float64)
    nearest = torch.cdist(base_vertices, template).argmin(dim=1)
    weights = torch.load(root / "data/keypoints/coco.pth", weights_only=True, map_location="cpu")
    rows = [
        torch.zeros(len(template), dtype=torch.float64).index_add_(0, nearest, weights[name].double())
        for name in COCO_KEYPOINTS
    ]
    return torch.stack(rows).to(model.device)


def _bone_directions(model, bones: torch.Tensor) -> torch.Tensor:
    """(J, 3) unit vectors from each bone's head to its children's mean head, at the default phenotype
    (Anny's local-ref deltas use world-aligned axes, so rest directions are in the joint axes)."""
    with torch.no_grad():
        heads = model()["rest_bone_heads"][0]
    parents = torch.tensor(model.bone_parents[1:], device=heads.device)
    child_sum = torch.zeros_like(heads).index_add_(0, parents, heads[1:])
    child_count = torch.zeros(len(heads), device=heads.device).index_add_(0, parents, torch.ones_like(parents, dtype=heads.dtype))
    directions = child_sum[bones] / child_count[bones, None].clamp_min(1) - heads[bones]
    return torch.nn.functional.normalize(directions, dim=-1)


def _vertex_regions(model, coco_weights: torch.Tensor) -> torch.Tensor:
    """Region of each vertex's dominant bone, except that the trunk splits at a waistline: bone
    weights put the top/bottom seam in a jagged V through the crotch."""
    dominant = model.vertex_bone_indices.gather(1, model.vertex_bone_weights.argmax(dim=1, keepdim=True))[:, 0]
    region_of_bone = torch.tensor(
        [_bone_region(label) for label in model.bone_labels], device=dominant.device
    )
    regions = region_of_bone[dominant]
    with torch.no_grad():
        rest = model()["rest_vertices"][0]
    up = rest[:, 2]  # Anny is Z-up
    keypoint_up = (coco_weights.to(rest.dtype) @ rest)[:, 2]
    hips = keypoint_up[[COCO_KEYPOINTS.index("left_hip"), COCO_KEYPOINTS.index("right_hip")]].mean()
    shoulders = keypoint_up[[COCO_KEYPOINTS.index("left_shoulder"), COCO_KEYPOINTS.index("right_shoulder")]].mean()
    waist = hips + WAIST_HEIGHT * (shoulders - hips)
    trunk = torch.tensor([label.startswith(("root", "pelvis", "spine")) for label in model.bone_labels],
                         device=dominant.device)[dominant]
    trunk_region = torch.where(up > waist, int(BodyRegion.TOP), int(BodyRegion.BOTTOM))
    return torch.where(trunk, trunk_region, regions)


def _bone_region(label: str) -> int:
    for prefixes, region in _REGION_BY_BONE_PREFIX:
        if label.startswith(prefixes):
            return int(region)
    raise ValueError(f"Anny bone {label!r} has no clothing region")
