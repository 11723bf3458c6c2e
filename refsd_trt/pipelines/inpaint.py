"""The inpainting method of Zwick et al. (2024): each person is repainted by SDXL inpainting on a
square crop (1.1 × the longer box side, resized to the UNet's resolution) at noise strength βd,
guided by that person's attribute prompt; the crops are merged back to front by mask coverage.

Unlike the published code, every person is processed whatever their size, masks are dilated so no
outline survives, and the coverage order is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from refsd_trt.attributes import PersonPrompt
from refsd_trt.diffusion import CropBatch, DiffusionComponents, DiffusionStage, StageSettings
from refsd_trt.kernels import dilate, feather
from refsd_trt.pipelines.crops import crop_images, crop_masks, generators, merge_crops, square_crops
from refsd_trt.pipelines.method import CropMethod
from refsd_trt.pipelines.timing import Timer
from refsd_trt.types import PersonDetections


@dataclass(frozen=True, kw_only=True)
class InpaintSettings:
    """What the method runs with, built from the effective RunConfig (``methods.inpaint_settings``): no
    defaults of its own but the crop resolution."""

    steps: int
    strength: float  # βd
    guidance_scale: float
    negative_prompt: str | None
    crop_scale: float  # crop side / the box's longer side
    dilate_px: int  # image pixels the person mask grows before inpainting
    feather_px: int  # image pixels of the soft edge the crops are pasted back with
    batch_size: int  # crops per UNet call
    size: int | None = None  # crop resolution in pixels; None: the UNet's native resolution (tests set less)


class InpaintMethod(CropMethod):
    name = "inpaint"

    def __init__(self, inpainter: DiffusionComponents, settings: InpaintSettings):
        if inpainter.unet_in_channels != 9:
            raise ValueError("the inpaint method needs a 9-channel inpainting UNet")
        self.settings = settings
        self.size = self.working_size = settings.size or inpainter.native_size
        self.device = inpainter.device
        self.stage = DiffusionStage(inpainter, StageSettings(
            steps=settings.steps, strength=settings.strength, guidance_scale=settings.guidance_scale,
            negative_prompt=settings.negative_prompt, batch_size=settings.batch_size))
        self.engines = inpainter.engines("inpaint")

    def repaint(self, canvases: list[torch.Tensor], detections: Sequence[PersonDetections],
                prompts: Sequence[Sequence[PersonPrompt]], timer: Timer) -> None:
        s = self.settings
        flat = [p for per_image in prompts for p in per_image]
        people = [d.masks[:, None].float() for d in detections]
        with timer("inpaint"):
            grown = [dilate(d.masks[:, None], s.dilate_px) for d in detections]
            boxes = square_crops(detections, canvases, s.crop_scale)
            crops = CropBatch(crop_images(canvases, boxes, self.size), [p.prompt for p in flat],
                              generators([p.seed for p in flat]), masks=crop_masks(grown, boxes, self.size))
            patches = self.stage.run(crops).images
        with timer("merge"):
            # The soft edge is made at image resolution (its width is in image pixels), then cut
            # like the crops so it lands where they do.
            alphas = crop_masks([feather(m, s.feather_px) for m in grown], boxes, self.size)
            merge_crops(canvases, boxes, patches, alphas, people)
