"""The offline CPU default: classical removal and an avatar, no diffusion.

1. remove: every person's dilated instance mask is filled from the scene around it (``scene_fill``,
   on the host: this path is CPU by design). Masks a segmentation model made are removed as they
   are; masks refined from a box classically (GrabCut) miss ears, hair and hands often enough that
   the whole box goes with them. Whatever the mask had and the avatar lacks is this fill, never
   the person;
2. render: each person's avatar is posed from their keypoints (standing in their box without; all
   people of the batch in one fit) and rendered into a square crop around them; low-confidence people (scored between the detector's
   recall floor and its threshold) get no avatar: the fill alone replaces them;
3. merge: the avatars are pasted over the cleaned background with softened edges, back to front.

Steps 1 and 2 read nothing of each other: the removal runs on a second thread beside the render.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from refsd_trt import failsafe
from refsd_trt.attributes import PersonPrompt
from refsd_trt.detection.masks import removal_masks
from refsd_trt.kernels import gaussian_blur, to_float, to_uint8
from refsd_trt.pipelines.avatars import Avatars
from refsd_trt.pipelines.crops import merge_crops, square_crops
from refsd_trt.pipelines.method import CropMethod
from refsd_trt.pipelines.scene_fill import fill_scene
from refsd_trt.pipelines.timing import Timer
from refsd_trt.threads import one_thread
from refsd_trt.types import PersonDetections

# The method's own constants (not user settings):
# besides dilate_px, masks grow by at least this share of the person's box height: YOLO masks come
# from 160² prototypes and miss thin parts (fingers, a lanyard) by more than a fixed few pixels on
# large people.
MASK_MARGIN = 0.02
RENDER_SIZE = 256  # avatar crop resolution
SOFTEN_PX = 1  # render pixels of blur inside the avatar's silhouette edge: anti-aliasing of the render


@dataclass(frozen=True, kw_only=True)
class LiteSettings:
    """What the method runs with, built from the effective RunConfig (``methods.lite_settings``)."""

    dilate_px: int  # image pixels the person masks grow before removal, so no outline remains
    crop_scale: float  # avatar crop side / the box's longer side


class LiteMethod(CropMethod):
    name = "lite"

    def __init__(self, avatars: Avatars, device: torch.device | str, settings: LiteSettings):
        self.avatars, self.device, self.settings = avatars, torch.device(device), settings
        self.engines = {}
        self.working_size = RENDER_SIZE

    def remove(self, canvas: torch.Tensor, detections: PersonDetections) -> None:
        """Fill every person's dilated region of one (3, H, W) [-1, 1] canvas from the scene, in place."""
        pixels = to_uint8(canvas).permute(1, 2, 0).cpu().numpy()
        height, width = pixels.shape[:2]
        heights = (detections.boxes[:, 3] - detections.boxes[:, 1]).tolist()
        holes = np.zeros((height, width), dtype=bool)
        for region, tall in zip(removal_masks(detections).cpu().numpy(), heights):
            holes |= failsafe.dilated(region, max(self.settings.dilate_px, round(MASK_MARGIN * tall)))
        cleaned = fill_scene(pixels, holes)
        canvas.copy_(to_float(torch.from_numpy(cleaned).permute(2, 0, 1).to(canvas.device)))

    def _remove_all(self, canvases: list[torch.Tensor], detections: Sequence[PersonDetections]) -> None:
        for canvas, det in zip(canvases, detections):
            self.remove(canvas, det)

    def repaint(self, canvases: list[torch.Tensor], detections: Sequence[PersonDetections],
                prompts: Sequence[Sequence[PersonPrompt]], timer: Timer) -> None:
        with one_thread():  # crops of 256 px and a body of 1,229 vertices: see refsd_trt.threads
            self._repaint(canvases, detections, prompts, timer)

    def _repaint(self, canvases: list[torch.Tensor], detections: Sequence[PersonDetections],
                 prompts: Sequence[Sequence[PersonPrompt]], timer: Timer) -> None:
        s = self.settings
        # The removal (OpenCV and scipy, which release the GIL) runs on a second thread beside the
        # avatars (torch ops driven from Python): they share nothing but the canvases' sizes. Its
        # stage time is what the batch waits for it beyond the render.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lite-remove") as pool:
            with timer("remove"):
                removed = pool.submit(self._remove_all, canvases, detections)
            with timer("render"):
                shown = [confident(d) for d in detections]
                people = [d.subset(k) for d, k in zip(detections, shown)]
                boxes = square_crops(people, canvases, s.crop_scale)
                kept = [[p[j] for j in k.nonzero().flatten().tolist()] for p, k in zip(prompts, shown)]
                avatars = self.avatars(people, boxes, RENDER_SIZE, kept)  # the whole batch in one fit
            with timer("remove"):
                removed.result()
        with timer("merge"):
            alpha = torch.cat([a.alpha for a in avatars])
            merge_crops(canvases, boxes, torch.cat([a.rgb for a in avatars]) * 2 - 1,
                        gaussian_blur(alpha, SOFTEN_PX) * alpha, [d.masks[:, None].float() for d in people])


def confident(detections: PersonDetections) -> torch.Tensor:
    """(n,) bool: the people scored at or above the detector's threshold (all, for detectors that
    report no low-confidence people)."""
    low = detections.low_confidence
    return torch.ones(len(detections), dtype=torch.bool, device=detections.boxes.device) if low is None else ~low
