"""What one diffusion model is made of: its engines, tokenizers, scheduler and the config values the
stages read. Loaded from a diffusers pipeline folder; the engines come from a caller-supplied factory
so this package never imports a backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import diffusers
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import CLIPTokenizer

from refsd_trt.engine import Engine
from refsd_trt.models import loaders

# Component name ("unet", "vae_encoder", "vae_decoder", "text_encoder", "text_encoder_2") -> Engine,
# e.g. ``lambda name: load_engine(folder, name, backend=..., device=..., precision=...)``.
EngineFactory = Callable[[str], Engine]


@dataclass
class DiffusionComponents:
    unet: Engine
    vae_encoder: Engine
    vae_decoder: Engine
    text_encoders: tuple[Engine, ...]  # SD: (CLIP L,), SDXL: (CLIP L, OpenCLIP bigG with projection)
    tokenizers: tuple[CLIPTokenizer, ...]
    scheduler: SchedulerMixin  # a template: every denoising run works on its own copy
    scaling_factor: float  # VAE latent scale
    unet_in_channels: int  # 4: img2img, 9: inpainting (latents ‖ mask ‖ masked-image latents)
    native_size: int  # pixels: the resolution the UNet was trained at (diffusers' default height/width)
    # SDXL pipeline flags, read from model_index.json with diffusers' defaults.
    force_zeros_for_empty_prompt: bool = True
    requires_aesthetics_score: bool = False

    @property
    def sdxl(self) -> bool:
        return len(self.text_encoders) == 2

    @property
    def device(self):
        return self.unet.device

    def engines(self, prefix: str) -> dict[str, Engine]:
        """Every engine of the model, named ``<prefix>_<component>`` (instrumentation, manifests)."""
        named = {"unet": self.unet, "vae_encoder": self.vae_encoder, "vae_decoder": self.vae_decoder}
        named.update({("text_encoder", "text_encoder_2")[i]: e for i, e in enumerate(self.text_encoders)})
        return {f"{prefix}_{name}": engine for name, engine in named.items()}

    def new_scheduler(self) -> SchedulerMixin:
        """A fresh scheduler: schedulers keep per-run state (step index, multistep history)."""
        return type(self.scheduler).from_config(self.scheduler.config)


# RunConfig's scheduler names -> diffusers classes.
SCHEDULERS = {"euler": "EulerDiscreteScheduler", "ddim": "DDIMScheduler", "dpmpp": "DPMSolverMultistepScheduler"}


def load_components(folder: str | Path, make_engine: EngineFactory, scheduler: str | None = None,
                    vae: str | Path | None = None) -> DiffusionComponents:
    """Read a diffusers pipeline folder (SD or SDXL, img2img or inpainting).

    ``scheduler`` (a key of ``SCHEDULERS`` or a diffusers scheduler class name) replaces the folder's
    scheduler, built from the folder's scheduler config as diffusers' ``from_config`` does. The
    engine factory decides where each engine comes from; ``vae`` names the VAE those engines run
    when it is not the pipeline's own (a separate fp16-safe VAE checkpoint): its config, not the
    pipeline's, gives the latent scale and resolution.
    """
    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    vae_folder = loaders.vae_folder(vae if vae is not None else folder)
    vae_cfg = loaders.diffusers_config(vae_folder)
    unet_cfg = loaders.diffusers_config(loaders.component_folder(folder, "unet")[0])
    if vae_cfg.get("latents_mean") is not None:
        # diffusers' inpaint pipelines ignore latents_mean/std when encoding but apply them when
        # decoding; no model this project runs has them, so refuse rather than guess.
        raise ValueError(f"{vae_folder}: VAEs with latents_mean/latents_std are not supported")
    names = [n for n in ("text_encoder", "text_encoder_2") if index.get(n, [None])[0] is not None]
    scheduler_cls = getattr(diffusers, SCHEDULERS.get(scheduler, scheduler) or index["scheduler"][1])
    return DiffusionComponents(
        unet=make_engine("unet"),
        vae_encoder=make_engine("vae_encoder"),
        vae_decoder=make_engine("vae_decoder"),
        text_encoders=tuple(make_engine(n) for n in names),
        tokenizers=tuple(CLIPTokenizer.from_pretrained(folder / n.replace("text_encoder", "tokenizer")) for n in names),
        scheduler=scheduler_cls.from_pretrained(folder, subfolder="scheduler"),
        scaling_factor=float(vae_cfg["scaling_factor"]),
        unet_in_channels=int(unet_cfg["in_channels"]),
        native_size=int(unet_cfg["sample_size"]) * 2 ** (len(vae_cfg["block_out_channels"]) - 1),
        force_zeros_for_empty_prompt=bool(index.get("force_zeros_for_empty_prompt", True)),
        requires_aesthetics_score=bool(index.get("requires_aesthetics_score", False)),
    )
