"""Poses avatars for detected people: from COCO keypoints when there are some, from the box otherwise.

The shape (``AvatarParams.shape``) is an input here, never a variable: it comes from
``BodyModel.sample_shape`` so that the avatar carries no trace of the person's own build. The only
size the fit adapts is the global one, through the camera depth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from refsd_trt.avatar.body_model import COCO_KEYPOINTS, BodyModel, rest_params
from refsd_trt.avatar.pose_prior import pose_prior
from refsd_trt.avatar.records import AvatarParams, Camera
from refsd_trt.threads import one_thread

BOTTOM_MARGIN = 0.02  # of the image height: a box ending this close to the bottom is cut off there
VISIBLE_FRACTION = 0.45  # of a cut-off person's height at least in view (head and chest)

# Torso keypoints fix the orientation and placement before the limbs are fitted.
_TORSO = [COCO_KEYPOINTS.index(name) for name in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]


@dataclass
class FitResult:
    params: AvatarParams
    camera: Camera
    reprojection_px: torch.Tensor  # (N,) mean keypoint error in pixels over the keypoints used; nan if none


@dataclass(frozen=True)
class FitSettings:
    camera_steps: int = 50  # orientation and placement only, on the torso keypoints
    pose_steps: int = 250  # everything
    learning_rate: float = 0.1  # initial Adam step: radians, box heights and log-depth
    min_confidence: float = 0.3  # keypoints below it count as missing (occluded, out of frame)
    prior_weight: float = 3e-5  # of the pull toward the rest pose (``pose_prior``'s ``rest_weight``)
    # Yaw starts (radians about the vertical axis): facing the camera and facing away; profiles are
    # reached from either.
    yaw_starts: tuple[float, ...] = (0.0, math.pi)


DEFAULT_FIT = FitSettings()


# One (height, width) shared by every person, or one row per person: people of a batch of images
# each keep their own image's size, on which the cut-off test and the default intrinsics depend.
ImageSizes = tuple[int, int] | Sequence[tuple[int, int]] | torch.Tensor


def image_sizes(sizes: ImageSizes, count: int, device=None) -> torch.Tensor:
    """(count, 2) float (height, width) per person from one shared size or one row per person."""
    return torch.as_tensor(sizes, dtype=torch.float32, device=device).expand(count, 2)


def default_intrinsics(sizes: ImageSizes, count: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(focal, principal), each (count, 2), for images without calibration: the focal length equals
    the longer side (about 53 degrees across it), a typical phone or compact-camera view."""
    height_width = image_sizes(sizes, count, device)
    focal = height_width.amax(1, keepdim=True).expand(count, 2).clone()
    principal = height_width.flip(1) / 2
    return focal, principal


def fit_boxes(
    body: BodyModel, boxes: torch.Tensor, image_size: ImageSizes, shape: torch.Tensor,
    focal: torch.Tensor | None = None,
) -> FitResult:
    """A standing, camera-facing avatar placed in each (N, 4) xyxy box: its projection spans the box's
    height and is centred in it. A box reaching the bottom of its own image (``image_size``, see
    ``ImageSizes``) holds a person cut off there: the avatar then hangs from the box top, as large as
    fits both the box width and a box showing at least ``VISIBLE_FRACTION`` of the body's height."""
    count = boxes.shape[0]
    params = rest_params(body, shape.to(body.dtype))
    params.body_pose = body.standing_pose(count)
    default_focal, principal = default_intrinsics(image_size, count, boxes.device)
    focal = default_focal if focal is None else focal
    with torch.no_grad():
        vertices = body(params).vertices
    camera = Camera(focal, principal, torch.zeros((count, 3), device=boxes.device))
    truncated = boxes[:, 3] >= image_sizes(image_size, count, boxes.device)[:, 0] * (1 - BOTTOM_MARGIN)
    box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    # Start at a depth where the body height maps to the box height, then correct scale and offset
    # from the actual projection: perspective makes the first guess slightly off.
    extent = vertices.amax(1) - vertices.amin(1)
    depth = focal[:, 1] * extent[:, 1] / box_h
    camera.translation = torch.stack([torch.zeros_like(depth), torch.zeros_like(depth), depth], dim=1)
    for _ in range(3):
        pixels = camera.project(vertices)
        low, high = pixels.amin(1), pixels.amax(1)
        extent_px = high - low
        cut_ratio = torch.maximum(extent_px[:, 0] / box_w, extent_px[:, 1] * VISIBLE_FRACTION / box_h)
        ratio = torch.where(truncated, cut_ratio, extent_px[:, 1] / box_h)
        depth = camera.translation[:, 2] * ratio
        camera.translation = camera.translation * ratio[:, None]
        pixels = camera.project(vertices)
        low, high = pixels.amin(1), pixels.amax(1)
        target_y = torch.where(truncated, boxes[:, 1] - low[:, 1], (boxes[:, 1] + boxes[:, 3] - low[:, 1] - high[:, 1]) / 2)
        shift = torch.stack([(boxes[:, 0] + boxes[:, 2] - low[:, 0] - high[:, 0]) / 2, target_y], dim=1)
        camera.translation = camera.translation + torch.cat(
            [shift * depth[:, None] / focal, torch.zeros_like(depth)[:, None]], dim=1
        )
    return FitResult(params, camera, torch.full((count,), float("nan"), device=boxes.device))


def fit_keypoints(
    body: BodyModel, keypoints: torch.Tensor, boxes: torch.Tensor, image_size: ImageSizes,
    shape: torch.Tensor, focal: torch.Tensor | None = None, settings: FitSettings = DEFAULT_FIT,
) -> FitResult:
    """Global orientation, body pose and camera placement per person from (N, 17, 3) COCO keypoints
    (x, y, confidence) in image pixels, all people and all yaw starts in one batch; the people may
    come from several images (``image_size``: see ``ImageSizes``). Fitting them together is fitting
    each alone, at a fraction of the cost: a step costs per op far more than per row.

    The loss is the confidence-weighted squared reprojection error in box heights (so that every
    person counts alike whatever their size) plus ``pose_prior``; the best yaw start wins per person.
    """
    with one_thread():  # hundreds of steps on tensors a few dozen numbers long
        return _fit_keypoints(body, keypoints, boxes, image_size, shape, focal, settings)


def _fit_keypoints(
    body: BodyModel, keypoints: torch.Tensor, boxes: torch.Tensor, image_size: ImageSizes,
    shape: torch.Tensor, focal: torch.Tensor | None, settings: FitSettings,
) -> FitResult:
    count, starts = keypoints.shape[0], len(settings.yaw_starts)
    start = fit_boxes(body, boxes, image_size, shape, focal)
    # Row i * starts + s of every batched tensor is person i from yaw start s.
    expand = lambda t: t.repeat_interleave(starts, dim=0)
    target = expand(keypoints[..., :2].to(body.dtype))
    weight = expand(torch.where(keypoints[..., 2] >= settings.min_confidence, keypoints[..., 2], 0.0))
    box_h = expand(boxes[:, 3] - boxes[:, 1])
    focal_px, principal = expand(start.camera.focal), expand(start.camera.principal)
    base = expand(start.camera.translation)

    yaw = torch.tensor(settings.yaw_starts, device=boxes.device).repeat(count)
    orient = torch.stack([torch.zeros_like(yaw), yaw, torch.zeros_like(yaw)], dim=1).requires_grad_()
    pose = expand(body.fitting_start_pose(count)).clone().requires_grad_()
    shift = torch.zeros((count * starts, 2), device=boxes.device, requires_grad=True)  # box heights
    log_depth = torch.zeros((count * starts,), device=boxes.device, requires_grad=True)
    shape_rows = expand(start.params.shape)
    keypoint_model = body.keypoint_model(shape_rows)

    torso_weight = torch.zeros_like(weight)
    torso_weight[:, _TORSO] = weight[:, _TORSO]

    def placement() -> Camera:
        scale = log_depth.exp()
        depth = base[:, 2] * scale
        xy = base[:, :2] * scale[:, None] + shift * (box_h * depth)[:, None] / focal_px
        return Camera(focal_px, principal, torch.cat([xy, depth[:, None]], dim=1))

    def losses(torso_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # While only the camera is fitted the pose is a constant: no gradient through the skeleton,
        # and the prior (a function of the pose alone) adds nothing to the camera's gradients.
        params = AvatarParams(orient, pose.detach() if torso_only else pose, shape_rows)
        pixels = placement().project(keypoint_model(params))
        w = torso_weight if torso_only else weight
        squared = ((pixels - target) / box_h[:, None, None]).square().sum(-1)
        data = (w * squared).sum(-1) / w.sum(-1).clamp_min(1e-6)
        if torso_only:
            return data, pixels
        return data + pose_prior(pose, body.joints, body.bone_directions, settings.prior_weight), pixels

    # Adam rather than L-BFGS: its updates are elementwise, so every person and start converges on
    # its own (a batched L-BFGS shares one line search), and its momentum carries limbs out of the
    # shallow basins around the rest pose. The cosine decay then settles the noise of the steps.
    for steps, variables, torso_only in (
        (settings.camera_steps, [orient, shift, log_depth], True),
        (settings.pose_steps, [orient, pose, shift, log_depth], False),
    ):
        # Fused: one kernel per step for all variables instead of a dozen small ops each, which is
        # what a step on tensors this small costs (fitting 9 % less CPU on the sample photos, the
        # same keypoint errors to 0.05 px).
        optimiser = torch.optim.Adam(variables, lr=settings.learning_rate, fused=True)
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
        for _ in range(steps):
            optimiser.zero_grad()
            # Each row's loss reads that row's variables alone: the sum gives every row the gradient
            # of its own loss, so people fitted together (of one image or many) do not interact.
            losses(torso_only)[0].sum().backward()
            optimiser.step()
            decay.step()

    with torch.no_grad():
        loss, pixels = losses(torso_only=False)
        best = loss.view(count, starts).argmin(1) + torch.arange(count, device=boxes.device) * starts
        used = weight[best] > 0
        error = ((pixels[best] - target[best]).norm(dim=-1) * used).sum(-1) / used.sum(-1)
        camera = placement()
        params = AvatarParams(orient[best], pose[best], shape_rows[best]).detach()
        return FitResult(params, Camera(camera.focal[best], camera.principal[best], camera.translation[best]), error)
