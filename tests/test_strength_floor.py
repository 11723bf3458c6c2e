"""Strength below what can anonymize is refused (issue 13): inpaint starts from the person's own latent,
and at a low strength that start is more person than noise."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from refsd_trt.config import RunConfig
from refsd_trt.diffusion.timesteps import start_schedule, start_snr, weakest_strength
from refsd_trt.methods import MAX_START_SNR, build_method
from refsd_trt.models.real_layout_zoo import CONFIGS
from refsd_trt.presets import PRESETS

SDXL_INPAINT = CONFIGS / "diffusers--stable-diffusion-xl-1.0-inpainting-0.1" / "scheduler" / "scheduler_config.json"


@pytest.fixture
def sdxl_inpaint_scheduler():
    """The real SDXL inpainting checkpoint's scheduler configuration (the package's copy)."""
    return lambda: EulerDiscreteScheduler.from_config(json.loads(SDXL_INPAINT.read_text()))


def test_start_snr_on_the_real_sdxl_inpainting_schedule(sdxl_inpaint_scheduler):
    snr = {s: start_snr(start_schedule(sdxl_inpaint_scheduler(), 30, s)) for s in (0.05, 0.3, 0.4, 0.6)}
    assert snr[0.05] > 500  # one step at t = 1: the VAE round trip of the person
    assert snr[0.3] == pytest.approx(1.85, abs=0.01)
    assert snr[0.4] == pytest.approx(0.94, abs=0.01)
    assert snr[0.6] == pytest.approx(0.25, abs=0.01)
    assert weakest_strength(sdxl_inpaint_scheduler(), 30, MAX_START_SNR) == pytest.approx(0.4, abs=1e-4)


def test_an_anonymizing_inpaint_below_the_floor_is_refused_and_at_it_runs(zoo):
    # The tiny zoo stands in for SDXL inpainting; an anonymizing preset is what the floor guards.
    preset = dataclasses.replace(PRESETS["tiny"], anonymizes=True)
    weak = RunConfig(preset="tiny", method="inpaint", strength=0.05, steps=30, backend="torch",
                     device="cpu").resolved(preset)
    with pytest.raises(ValueError, match=r"strength 0\.05 is too weak for inpaint to anonymize: with 30 steps it "
                                         r"starts from the person's own latent at signal-to-noise \d+\.\d\d, more "
                                         r"person than noise; use strength (0\.\d+) or more") as refused:
        build_method(preset, weak, torch.device("cpu"))
    floor = float(re.search(r"use strength (0\.\d+)", str(refused.value)).group(1))
    assert 0.05 < floor <= 0.6
    method = build_method(preset, dataclasses.replace(weak, strength=floor), torch.device("cpu"))
    assert method.stage.start_snr <= MAX_START_SNR
    # The tiny preset itself (random models, not an anonymization) is a test fixture: any strength runs.
    build_method(PRESETS["tiny"], weak, torch.device("cpu"))
