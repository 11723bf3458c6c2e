"""The denoising loop over a diffusers scheduler, with classifier-free guidance.

Strict scheduler contract (what diffusers' pipelines do): ``scale_model_input`` before every UNet
call, ``step`` after it, nothing else touches the scheduler's state. With guidance the UNet sees the
batch twice, unconditional rows first. The UNet's input and output buffers are allocated once and
refilled in place, so a compiled engine binds the same addresses every step; latents and the
guidance arithmetic stay float32 whatever the engine's precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from refsd_trt.diffusion.timesteps import Schedule
from refsd_trt.engine import Engine


@dataclass
class UNetConditioning:
    """Per-row UNet inputs that do not change across steps, for a batch of n crops."""

    hidden: torch.Tensor  # (rows, tokens, dim) encoder_hidden_states; rows = 2n with guidance
    text_embeds: torch.Tensor | None = None  # (rows, projection_dim), SDXL only
    time_ids: torch.Tensor | None = None  # (rows, 6|5), SDXL only
    extra_channels: torch.Tensor | None = None  # (n, 5, h, w) mask ‖ masked latents, 9-channel UNets


def denoise(unet: Engine, schedule: Schedule, latents: torch.Tensor, cond: UNetConditioning,
            guidance_scale: float, step_kwargs: dict) -> torch.Tensor:
    """Run every step of ``schedule`` on ``latents`` (n, c, h, w) float32; returns the final latents."""
    guided = guidance_scale > 1.0  # diffusers' do_classifier_free_guidance
    n, c = latents.shape[:2]
    copies = 2 if guided else 1
    rows = copies * n
    dtypes = {t.name: t.torch_dtype(unet.precision) for t in unet.spec.inputs}
    device = latents.device

    sample = torch.empty((rows, unet.spec.inputs[0].shape[1], *latents.shape[2:]), dtype=dtypes["sample"],
                         device=device)
    if cond.extra_channels is not None:
        sample[:, c:] = cond.extra_channels.repeat(copies, 1, 1, 1)
    out = torch.empty((rows, c, *latents.shape[2:]), dtype=sample.dtype, device=device)
    # One host-to-device copy of the whole schedule, one contiguous (rows,) row per step. The UNet
    # is fed one tensor of its own, refilled each step (a device-to-device copy): a row of
    # timestep_rows starts 4-8 bytes per row past the previous one, and compiled engines bind
    # by address (TensorRT needs 256-byte aligned addresses, CUDA graphs the same ones each step).
    timestep_rows = schedule.timesteps[:, None].expand(-1, rows).to(device, dtypes["timestep"]).contiguous()
    timestep = torch.empty((rows,), dtype=dtypes["timestep"], device=device)
    feeds = {"sample": sample, "timestep": timestep,
             "encoder_hidden_states": cond.hidden.to(dtypes["encoder_hidden_states"])}
    if cond.text_embeds is not None:
        feeds["text_embeds"] = cond.text_embeds.to(dtypes["text_embeds"])
        feeds["time_ids"] = cond.time_ids.to(dtypes["time_ids"])

    scheduler = schedule.scheduler
    for i, t in enumerate(schedule.timesteps):
        scaled = scheduler.scale_model_input(latents, t)
        for k in range(copies):
            sample[k * n:(k + 1) * n, :c] = scaled
        timestep.copy_(timestep_rows[i])
        noise_pred = unet.run(feeds, outputs={"out_sample": out})["out_sample"].float()
        if guided:
            uncond, text = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (text - uncond)
        latents = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
    return latents
