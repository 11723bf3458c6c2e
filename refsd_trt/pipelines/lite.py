"""The offline CPU default: classical removal and an avatar, no diffusion.

1. remove: every person's whole box (dilated) is inpainted classically (OpenCV Telea, on the host:
   this path is CPU by design, and it is the same fill the fail-safe uses). Boxes, not the masks:
   a mask refined from a box classically (GrabCut) misses ears, hair and hands often enough that
   removing only the mask leaves identifying pixels beside the avatar;
2. render: each person's avatar is posed for their box (or keypoints) and rendered into a square
   crop around them;
3. merge: the avatars are pasted over the cleaned background with softened edges, back to front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from refsd_trt import failsafe
from refsd_trt.attributes import PersonPrompt
from refsd_trt.detection.masks import box_masks
from refsd_trt.kernels import gaussian_blur, to_float, to_uint8
from refsd_trt.pipelines.avatars import Avatars
from refsd_trt.pipelines.crops import merge_crops, square_crops
from refsd_trt.pipelines.method import CropMethod
from refsd_trt.pipelines.timing import Timer
from refsd_trt.types import PersonDetections


@dataclass(frozen=True)
class LiteSettings:
    dilate_px: int = 8  # image pixels the person masks grow before removal, so no outline remains
    soften_px: int = 1  # crop pixels of blur inside the avatar's silhouette edge
    crop_scale: float = 1.1
    render_size: int = 256  # avatar crop resolution


class LiteMethod(CropMethod):
    name = "lite"

    def __init__(self, avatars: Avatars, device: torch.device | str = "cpu", settings: LiteSettings = LiteSettings()):
        self.avatars, self.device, self.settings = avatars, torch.device(device), settings
        self.engines = {}
        self.working_size = settings.render_size

    def remove(self, canvas: torch.Tensor, detections: PersonDetections) -> None:
        """Inpaint every person's dilated box of one (3, H, W) [-1, 1] canvas, in place."""
        pixels = to_uint8(canvas).permute(1, 2, 0).cpu().numpy()
        height, width = pixels.shape[:2]
        boxes = box_masks(detections.boxes, height, width) | detections.masks
        cleaned = failsafe.fill_people(pixels, boxes.cpu().numpy(), self.settings.dilate_px)
        canvas.copy_(to_float(torch.from_numpy(cleaned).permute(2, 0, 1).to(canvas.device)))

    def repaint(self, canvases: list[torch.Tensor], detections: Sequence[PersonDetections],
                prompts: Sequence[Sequence[PersonPrompt]], timer: Timer) -> None:
        s = self.settings
        with timer("remove"):
            for canvas, det in zip(canvases, detections):
                self.remove(canvas, det)
        with timer("render"):
            boxes = square_crops(detections, canvases, s.crop_scale)
            avatars = [self.avatars(d, b, s.render_size, p) for d, b, p in zip(detections, boxes, prompts)]
        with timer("merge"):
            alpha = torch.cat([a.alpha for a in avatars])
            merge_crops(canvases, boxes, torch.cat([a.rgb for a in avatars]) * 2 - 1,
                        gaussian_blur(alpha, s.soften_px) * alpha, [d.masks[:, None].float() for d in detections])
