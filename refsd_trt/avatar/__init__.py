"""Identity-free 3D avatars for detected people: body models, pose fitting, rendering.

Pipeline entry point: ``render_avatars(detections, image_size, attributes, seeds)`` -> ``AvatarRenders``
(per-person RGB/alpha/depth crops and the image boxes they cover). The pieces are public too:
``BodyModel`` backends (``AnnyBody``, ``SmplBody``), ``fit_keypoints`` / ``fit_boxes``, ``render`` with
a ``Rasterizer`` (``TorchRasterizer``; ``NvdiffrastRasterizer`` from ``refsd_trt.avatar.nvdiffrast_rasterizer``).
"""

from refsd_trt.avatar.anny_body import AnnyBody, anny_body
from refsd_trt.avatar.avatars import AvatarRenders, avatar_meshes, crop_boxes, fit_avatars, render_avatars
from refsd_trt.avatar.body_model import COCO_KEYPOINTS, BodyModel, BodyRegion, JointSpec, rest_params
from refsd_trt.avatar.contact_sheet import avatar_preview, contact_sheet, overlay
from refsd_trt.avatar.fitting import FitResult, FitSettings, default_intrinsics, fit_boxes, fit_keypoints
from refsd_trt.avatar.rasterizer import Fragments, Rasterizer, TorchRasterizer
from refsd_trt.avatar.records import AvatarParams, BodyOutput, Camera, Meshes, RenderOutput
from refsd_trt.avatar.render import render
from refsd_trt.avatar.smpl_body import SmplBody, SmplModelFilesMissing

__all__ = [
    "COCO_KEYPOINTS",
    "AnnyBody",
    "AvatarParams",
    "AvatarRenders",
    "BodyModel",
    "BodyOutput",
    "BodyRegion",
    "Camera",
    "FitResult",
    "FitSettings",
    "Fragments",
    "JointSpec",
    "Meshes",
    "Rasterizer",
    "RenderOutput",
    "SmplBody",
    "SmplModelFilesMissing",
    "TorchRasterizer",
    "anny_body",
    "avatar_meshes",
    "avatar_preview",
    "contact_sheet",
    "crop_boxes",
    "default_intrinsics",
    "fit_avatars",
    "fit_boxes",
    "fit_keypoints",
    "overlay",
    "render",
    "render_avatars",
    "rest_params",
]
