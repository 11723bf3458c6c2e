"""The offline CPU default: classical removal and an avatar, no diffusion.

1. remove: the union of the image's dilated person masks is inpainted classically (OpenCV Telea,
   on the host: this path is CPU by design, and it is the same fill the fail-safe uses);
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
from refsd_trt.kernels import gaussian_blur, square_boxes, to_float
from refsd_trt.pipelines.avatars import Avatars
from refsd_trt.pipelines.crops import merge_crops
from refsd_trt.pipelines.timing import Timer, no_timer
from refsd_trt.types import PersonDetections


@dataclass(frozen=True)
class LiteSettings:
    dilate_px: int = 8  # image pixels the person masks grow before removal, so no outline remains
    soften_px: int = 1  # crop pixels of blur on the avatar's silhouette edge
    crop_scale: float = 1.1
    render_size: int = 256  # avatar crop resolution


class LiteMethod:
    name = "lite"

    def __init__(self, avatars: Avatars, device: torch.device | str = "cpu", settings: LiteSettings = LiteSettings()):
        self.avatars, self.device, self.settings = avatars, torch.device(device), settings
        self.engines: dict = {}

    def remove(self, image: torch.Tensor, detections: PersonDetections) -> torch.Tensor:
        """(3, H, W) uint8 -> the same image with every person's dilated mask inpainted."""
        pixels = image.permute(1, 2, 0).cpu().numpy()
        masks = detections.masks.cpu().numpy()
        cleaned = failsafe.fill_people(pixels, masks, self.settings.dilate_px)
        return torch.from_numpy(cleaned).permute(2, 0, 1).to(image.device)

    def __call__(self, images: Sequence[torch.Tensor], detections: Sequence[PersonDetections],
                 prompts: Sequence[Sequence[PersonPrompt]], timer: Timer = no_timer) -> list[torch.Tensor]:
        s = self.settings
        with timer("remove"):
            canvases = [to_float(self.remove(image, det)[None])[0] for image, det in zip(images, detections)]
        with timer("render"):
            boxes = [square_boxes(d.boxes, s.crop_scale, tuple(c.shape[-2:])) for d, c in zip(detections, canvases)]
            avatars = [self.avatars(d, b, s.render_size, p) for d, b, p in zip(detections, boxes, prompts)]
        with timer("merge"):
            rgb = torch.cat([a.rgb for a in avatars]) * 2 - 1
            alpha = torch.cat([a.alpha for a in avatars])
            merge_crops(canvases, boxes, rgb, gaussian_blur(alpha, s.soften_px) * alpha,
                        [d.masks[:, None].float() for d in detections])
        return [((c + 1) / 2).clamp_(0, 1) for c in canvases]
