"""What the inpaint and refsd methods share around their stages: uint8 images in, float [-1, 1]
canvases the method repaints in place, float [0, 1] images out (``refsd_trt.stages.Method``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from refsd_trt.attributes import PersonPrompt
from refsd_trt.engine import Engine
from refsd_trt.kernels import to_float, u8_to_unit
from refsd_trt.pipelines.timing import Timer, no_timer
from refsd_trt.types import PersonDetections


class CropMethod(ABC):
    name: str
    device: torch.device
    engines: dict[str, Engine]  # what the method runs, for instrumentation and the manifest
    working_size: int  # the square crop resolution people are processed at (smaller people are upscaled)

    def __call__(self, images: Sequence[torch.Tensor], detections: Sequence[PersonDetections],
                 prompts: Sequence[Sequence[PersonPrompt]], timer: Timer = no_timer) -> list[torch.Tensor]:
        """``images``: (3, H, W) uint8 on the device; returns (3, H, W) float images in [0, 1] there."""
        if not any(prompts):
            return [u8_to_unit(image) for image in images]
        canvases = [to_float(image[None])[0] for image in images]
        self.repaint(canvases, detections, prompts, timer)
        return [((c + 1) / 2).clamp_(0, 1) for c in canvases]

    @abstractmethod
    def repaint(self, canvases: list[torch.Tensor], detections: Sequence[PersonDetections],
                prompts: Sequence[Sequence[PersonPrompt]], timer: Timer) -> None:
        """Replace every detected person in ``canvases`` ((3, H, W) float in [-1, 1]), in place."""
