"""One diffusion stage over a batch of crops: img2img (4-channel UNet) or inpainting (9-channel).

Crops from every person of every image are cut into batches of ``batch_size``. For engines that
want fixed shapes (captured CUDA graphs) the last batch is padded (repeats of its last crop, no
random draws); other engines run it as it is, since padding costs a full batch of compute. Each crop
keeps its own prompt and generator, so its result equals running it alone, and equals diffusers'
pipeline for that crop (same weights, scheduler, seed, strength and guidance).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from refsd_trt.diffusion.components import DiffusionComponents
from refsd_trt.diffusion.decode import decode_latents
from refsd_trt.diffusion.denoise import UNetConditioning, denoise
from refsd_trt.diffusion.latents import encode_moments, randn_per_crop, sample_latents, start_latents
from refsd_trt.diffusion.masking import binarize_and_mask, inpaint_channels
from refsd_trt.diffusion.prompts import PromptEmbeddings, PromptEncoder
from refsd_trt.diffusion.time_ids import SizeConditioning
from refsd_trt.diffusion.timesteps import start_schedule, start_snr, step_kwargs


@dataclass
class CropBatch:
    """Crops at the UNet's working resolution, all of the same size, on the engines' device."""

    images: torch.Tensor  # (n, 3, H, W) float32 in [-1, 1]
    prompts: list[str]
    generators: list[torch.Generator]  # one per crop: all of that crop's random draws
    masks: torch.Tensor | None = None  # (n, 1, H, W) in [0, 1], 1 = repaint; 9-channel UNets only
    sizes: SizeConditioning | None = None  # SDXL micro-conditioning; None = diffusers' default

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if len(self.prompts) != n or len(self.generators) != n:
            raise ValueError(f"{n} crops need {n} prompts and generators, got {len(self.prompts)} and "
                             f"{len(self.generators)}")
        if self.masks is not None and self.masks.shape[0] != n:
            raise ValueError(f"{n} crops need {n} masks, got {self.masks.shape[0]}")

    def __len__(self) -> int:
        return int(self.images.shape[0])


ETA = 0.0  # DDIM's η (deterministic DDIM, diffusers' default); other schedulers ignore it


@dataclass(frozen=True, kw_only=True)
class StageSettings:
    """What one stage runs with; the methods build it from their settings (no defaults here)."""

    steps: int
    strength: float  # βd: the fraction of the schedule that runs (1 = from pure noise when inpainting)
    guidance_scale: float  # > 1 enables classifier-free guidance
    negative_prompt: str | None
    batch_size: int  # crops per UNet call (the UNet sees twice as many rows with guidance)


@dataclass
class StageResult:
    images: torch.Tensor  # (n, 3, H, W) float32, the decoded crops in about [-1, 1]


@dataclass
class DiffusionStage:
    components: DiffusionComponents
    settings: StageSettings
    prompts: PromptEncoder | None = None  # pass one to share its prompt cache between stages

    def __post_init__(self) -> None:
        if self.prompts is None:
            self.prompts = PromptEncoder(self.components)
        if self.components.unet_in_channels not in (4, 9):
            raise ValueError(f"UNets with {self.components.unet_in_channels} input channels are not supported")
        # With guidance the UNet sees each crop twice; a partial-strength inpaint batch encodes
        # image and masked image in one VAE call. Both must fit the engines' batch range.
        rows = 2 * self.settings.batch_size
        for engine in (self.components.unet, self.components.vae_encoder):
            if rows > engine.spec.axes["batch"].max:
                raise ValueError(f"batch_size {self.settings.batch_size} needs {rows} rows of {engine.spec.name}, "
                                 f"whose batch axis ends at {engine.spec.axes['batch'].max}")
        # Setting timesteps is host work (some schedulers go through numpy); do it once here and
        # give each batch a copy, since stepping changes a scheduler's state.
        self._schedule = start_schedule(self.components.new_scheduler(), self.settings.steps, self.settings.strength)

    @property
    def start_snr(self) -> float:
        """Signal-to-noise ratio of the latent each crop starts from (``timesteps.start_snr``)."""
        return start_snr(self._schedule)

    @property
    def inpainting(self) -> bool:
        return self.components.unet_in_channels == 9

    def run(self, crops: CropBatch) -> StageResult:
        if self.inpainting != (crops.masks is not None):
            raise ValueError("9-channel (inpainting) UNets need masks, 4-channel ones take none")
        n, s = len(crops), self.settings
        if n == 0:
            return StageResult(crops.images.clone())
        guided = s.guidance_scale > 1.0
        text = self.prompts.encode(crops.prompts)
        uncond = self.prompts.negative(s.negative_prompt, n) if guided else None
        time_ids = None
        if self.components.sdxl:
            sizes = crops.sizes or SizeConditioning.default(n, *crops.images.shape[-2:], crops.images.device)
            time_ids = sizes.time_ids(self.components.requires_aesthetics_score)
        images = []
        for start in range(0, n, s.batch_size):
            index = list(range(start, min(start + s.batch_size, n)))
            fill = s.batch_size - len(index) if self.components.unet.fixed_shapes else 0
            padded = index + [index[-1]] * fill
            images.append(self._run_batch(crops, index, padded, text, uncond, time_ids)[:len(index)])
        return StageResult(torch.cat(images))

    def _run_batch(self, crops: CropBatch, index: list[int], padded: list[int], text: PromptEmbeddings,
                   uncond: PromptEmbeddings | None, time_ids: tuple[torch.Tensor, torch.Tensor] | None
                   ) -> torch.Tensor:
        c, s = self.components, self.settings
        rows = torch.as_tensor(padded, device=crops.images.device)
        generators = [crops.generators[i] for i in index] + [None] * (len(padded) - len(index))
        schedule = copy.deepcopy(self._schedule)
        images = crops.images[rows]

        # diffusers' inpaint pipelines skip encoding the image at full strength (they start from pure
        # noise); img2img always encodes it. Both VAE inputs go through one encoder call.
        needs_image_latents = not (self.inpainting and schedule.full_strength)
        to_encode = [images] if needs_image_latents else []
        if self.inpainting:
            binary, masked_images = binarize_and_mask(images, crops.masks[rows])
            to_encode.append(masked_images)
        moments = encode_moments(c.vae_encoder, torch.cat(to_encode)).split(len(padded))
        latent_shape = (moments[0].shape[1] // 2, *moments[0].shape[2:])

        # Each crop's generator draws in diffusers' order: image sample, start noise, masked-image sample.
        image_latents = None
        if needs_image_latents:
            image_latents = sample_latents(moments[0], randn_per_crop(generators, latent_shape, images.device),
                                           c.scaling_factor)
        noise = randn_per_crop(generators, latent_shape, images.device)
        extra = None
        if self.inpainting:
            masked_latents = sample_latents(moments[-1], randn_per_crop(generators, latent_shape, images.device),
                                            c.scaling_factor)
            extra = inpaint_channels(binary, masked_latents)
        latents = start_latents(schedule, image_latents, noise)

        cond_rows = text.rows(padded)
        if uncond is not None:
            cond_rows = PromptEmbeddings.cat([uncond.rows(padded), cond_rows])
        unet_time_ids = None
        if time_ids is not None:
            positive, negative = time_ids[0][rows], time_ids[1][rows]
            unet_time_ids = torch.cat([negative, positive]) if uncond is not None else positive
        cond = UNetConditioning(cond_rows.hidden, cond_rows.pooled, unet_time_ids, extra)

        # Schedulers that draw noise while stepping take a generator per row; padding rows get
        # throwaway ones so the real crops' generators advance exactly as when run alone.
        spare = crops.generators[index[0]].device
        step_generators = [torch.Generator(device=spare) if g is None else g for g in generators]
        latents = denoise(c.unet, schedule, latents, cond, s.guidance_scale,
                          step_kwargs(schedule.scheduler, step_generators, ETA))
        return decode_latents(c.vae_decoder, latents, c.scaling_factor)
