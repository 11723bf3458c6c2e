"""Denoising strength βd -> the part of the scheduler's schedule a run walks, as diffusers'
img2img/inpaint ``get_timesteps`` computes it.

The schedule stays on the host: timesteps are constants the scheduler indexes its own host tables
with, so keeping them there means no step reads a device value back. The UNet gets its timestep
feed from one device copy made before the loop.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin


@dataclass
class Schedule:
    scheduler: SchedulerMixin  # set up for this run: timesteps set, begin index at the start step
    timesteps: torch.Tensor  # (k,) host tensor, the steps this run takes
    full_strength: bool  # strength == 1: inpaint pipelines then start from pure noise


def start_schedule(scheduler: SchedulerMixin, steps: int, strength: float) -> Schedule:
    """``scheduler`` must be fresh; it is configured in place. Each run steps its own copy."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    scheduler.set_timesteps(steps, device="cpu")
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    timesteps = scheduler.timesteps[t_start * scheduler.order:]
    if len(timesteps) == 0:
        raise ValueError(f"strength {strength} with {steps} steps leaves no denoising step")
    # Schedulers otherwise locate the start by searching their timesteps (a device read on GPU).
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    return Schedule(scheduler, timesteps, full_strength=strength == 1.0)


def start_snr(schedule: Schedule) -> float:
    """Signal-to-noise ratio ᾱ/(1−ᾱ) of the latent a run starts from: for img2img and partial-strength
    inpainting, the input's own latent noised to the first timestep. Above 1 it holds more of the
    input than of noise."""
    alpha = float(schedule.scheduler.alphas_cumprod[int(schedule.timesteps[0])])
    return alpha / (1.0 - alpha) if alpha < 1.0 else float("inf")


def weakest_strength(scheduler: SchedulerMixin, steps: int, max_snr: float) -> float:
    """The lowest strength (in steps of 1/``steps``) whose start SNR is at most ``max_snr``, for a fresh
    scheduler of the kind a stage uses (configured in place)."""
    for k in range(1, steps + 1):
        strength = min(1.0, (k + 1e-6) / steps)  # k steps exactly, whatever k / steps rounds to
        if start_snr(start_schedule(scheduler, steps, strength)) <= max_snr:
            return strength
    return 1.0


def step_kwargs(scheduler: SchedulerMixin, generators: list[torch.Generator], eta: float) -> dict:
    """The optional ``step`` arguments this scheduler takes (diffusers' ``prepare_extra_step_kwargs``):
    η for DDIM, and the per-crop generators for schedulers that draw noise while stepping."""
    accepted = inspect.signature(scheduler.step).parameters
    kwargs: dict = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generators
    return kwargs
