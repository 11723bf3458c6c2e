"""RefSD: remove each person, put an identity-free avatar in their place, and let SDXL refine it.

1. remove: the person masks grow by ``dilate_px``; SD inpainting repaints a square crop around each
   person at full strength with a background prompt, where any person of that image was (so a
   neighbour overlapping the crop goes too); the crops are pasted back with a feathered edge.
2. render: an avatar of each person (``Avatars``) is composited onto the cleaned background crop.
3. refine: SDXL img2img at strength βd, guided by the person's attribute prompt.
4. merge: the refined avatar region (its alpha, feathered by ``feather_px`` image pixels, as the
   removal's edge) is pasted back, back to front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from refsd_trt.attributes import PersonPrompt
from refsd_trt.diffusion import CropBatch, DiffusionComponents, DiffusionStage, StageSettings
from refsd_trt.kernels import alpha_blend, dilate, feather
from refsd_trt.pipelines.avatars import AvatarCrops, Avatars, BodyModelAvatars
from refsd_trt.pipelines.crops import (
    crop_images,
    crop_masks,
    feather_in_image,
    generators,
    merge_crops,
    square_crops,
)
from refsd_trt.pipelines.method import CropMethod
from refsd_trt.pipelines.timing import Timer
from refsd_trt.types import PersonDetections


@dataclass(frozen=True, kw_only=True)
class RefsdSettings:
    """What the method runs with, built from the effective RunConfig (``methods.refsd_settings``): no
    defaults of its own but the crop resolutions."""

    # Removal (SD inpainting, always from pure noise: nothing of the person may survive).
    removal_prompt: str
    removal_negative_prompt: str | None
    removal_steps: int
    removal_guidance_scale: float
    # Refinement (SDXL img2img on the avatar composite).
    steps: int
    strength: float  # βd
    guidance_scale: float
    negative_prompt: str | None
    crop_scale: float  # crop side / the box's longer side, both stages
    dilate_px: int  # image pixels the person masks grow before removal
    feather_px: int  # image pixels of the soft paste-back edge, both stages
    batch_size: int  # crops per UNet call
    removal_size: int | None = None  # crop resolution; None: the removal UNet's native one (tests set less)
    refine_size: int | None = None  # None: the refiner's native resolution (tests set less)


class RefsdMethod(CropMethod):
    name = "refsd"

    def __init__(self, removal: DiffusionComponents, refiner: DiffusionComponents,
                 settings: RefsdSettings, avatars: Avatars | None = None):
        if removal.unet_in_channels != 9 or refiner.unet_in_channels != 4:
            raise ValueError("refsd needs a 9-channel inpainting UNet for removal and a 4-channel refiner")
        s = self.settings = settings
        self.avatars = avatars or BodyModelAvatars()
        self.device = refiner.device
        self.removal_size = s.removal_size or removal.native_size
        self.refine_size = self.working_size = s.refine_size or refiner.native_size
        self.remover = DiffusionStage(removal, StageSettings(
            steps=s.removal_steps, strength=1.0, guidance_scale=s.removal_guidance_scale,
            negative_prompt=s.removal_negative_prompt, batch_size=s.batch_size))
        self.refiner = DiffusionStage(refiner, StageSettings(
            steps=s.steps, strength=s.strength, guidance_scale=s.guidance_scale,
            negative_prompt=s.negative_prompt, batch_size=s.batch_size))
        self.engines = {**removal.engines("removal"), **refiner.engines("refine")}

    def repaint(self, canvases: list[torch.Tensor], detections: Sequence[PersonDetections],
                prompts: Sequence[Sequence[PersonPrompt]], timer: Timer) -> None:
        s = self.settings
        flat = [p for per_image in prompts for p in per_image]
        people = [d.masks[:, None].float() for d in detections]
        seeds = [p.seed for p in flat]
        with timer("remove"):
            self._remove(canvases, detections, people, seeds)
        with timer("render"):
            boxes = square_crops(detections, canvases, s.crop_scale)
            backgrounds = crop_images(canvases, boxes, self.refine_size)
            avatars = self.avatars(detections, boxes, self.refine_size, prompts)
            avatar = AvatarCrops(torch.cat([a.rgb for a in avatars]), torch.cat([a.alpha for a in avatars]))
            composite = alpha_blend(avatar.rgb * 2 - 1, backgrounds, avatar.alpha)
        with timer("refine"):
            refined = self.refiner.run(CropBatch(composite, [p.prompt for p in flat], generators(seeds))).images
        with timer("merge"):
            # The avatar's soft edge is made at image resolution, like the removal's: feather_px
            # means image pixels in both stages, whatever a crop's scale.
            alphas = feather_in_image(avatar.alpha, boxes, canvases, s.feather_px)
            merge_crops(canvases, boxes, refined, alphas, people)

    def _remove(self, canvases: list[torch.Tensor], detections: Sequence[PersonDetections],
                people: list[torch.Tensor], seeds: list[int]) -> None:
        """Repaint every person's (dilated) region with background, in place on ``canvases``."""
        s = self.settings
        # Every crop of an image removes all of that image's people it contains: the mask is the
        # union (dilation commutes with it), shared by the image's crops. The appended empty mask
        # gives images without people an (unused) empty union instead of a reduction error.
        union = [dilate(torch.cat([m, m.new_zeros((1, *m.shape[1:]))]).amax(dim=0, keepdim=True), s.dilate_px)
                 for m in (d.masks[:, None] for d in detections)]
        boxes = square_crops(detections, canvases, s.crop_scale, margin=s.dilate_px)
        shared = [u.expand(len(d), -1, -1, -1) for u, d in zip(union, detections)]
        crops = CropBatch(crop_images(canvases, boxes, self.removal_size), [s.removal_prompt] * len(seeds),
                          generators(seeds), masks=crop_masks(shared, boxes, self.removal_size))
        removed = self.remover.run(crops).images
        soft = [feather(u, s.feather_px).expand(len(d), -1, -1, -1) for u, d in zip(union, detections)]
        merge_crops(canvases, boxes, removed, crop_masks(soft, boxes, self.removal_size), people)
