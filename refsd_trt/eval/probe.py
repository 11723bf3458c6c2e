"""A near-identity method: what the identity gate exists to catch.

It changes every pixel of every person a little (Gaussian noise, σ = 4 grey levels), as a diffusion
inpainting at a strength far too low to anonymize does (one denoising step, a VAE round trip): no
person stays byte-identical, so the byte check passes them, and every face stays recognisable
(dlib distances 0.06-0.23 on the sample photos). The eval runs it with the gate and without, so the
report shows both what such a method leaks and what the gate leaves of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from refsd_trt.attributes import PersonPrompt
from refsd_trt.stages import StageTimer
from refsd_trt.types import PersonDetections


@dataclass(frozen=True)
class NearIdentitySettings:
    sigma: float = 4.0  # grey levels of noise on the people
    crop_scale: float = 1.1  # the Method contract's crop size (no crop is made)


class NearIdentity:
    name = "near-identity"
    working_size = 0  # people are not cropped or rescaled: no "small person upscaled" notes

    def __init__(self, settings: NearIdentitySettings = NearIdentitySettings(), seed: int = 0):
        self.settings, self.device, self.seed = settings, torch.device("cpu"), seed
        self.engines: dict = {}

    def __call__(self, images: Sequence[torch.Tensor], detections: Sequence[PersonDetections],
                 prompts: Sequence[Sequence[PersonPrompt]], timer: StageTimer) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed)
        outputs = []
        with timer("inpaint"):
            for image, det in zip(images, detections):
                people = det.masks.any(dim=0).cpu()
                noise = torch.randn(image.shape, generator=generator) * self.settings.sigma
                noisy = (image.cpu().float() + noise * people).clamp(0, 255) / 255
                outputs.append(noisy.to(image.device))
        return outputs
