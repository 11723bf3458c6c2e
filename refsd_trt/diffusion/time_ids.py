"""SDXL's size micro-conditioning ("add_time_ids"), laid out as diffusers' ``_get_add_time_ids``.

Without an aesthetic score: original_size + crops_coords_top_left + target_size (6 values, each
size as (height, width)); the negative row repeats them, the positive crop offset included (diffusers
does the same). Checkpoints that require an aesthetic score (the SDXL refiner) take
original_size + crop + score (5 values) and a negative row with its own crop offset and score.
Per-crop values are device tensors so callers can condition on each crop's true size without
reading boxes back to the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SizeConditioning:
    original_size: torch.Tensor  # (n, 2) height, width of the source region before resizing
    crop_top_left: torch.Tensor  # (n, 2) y, x
    target_size: torch.Tensor  # (n, 2) height, width of the generated image
    aesthetic_score: float = 6.0  # diffusers' defaults; only read by aesthetic-score checkpoints
    negative_aesthetic_score: float = 2.5

    @staticmethod
    def default(n: int, height: int, width: int, device: torch.device | str) -> SizeConditioning:
        """diffusers' default for an (height, width) output: original = target = the output size, no crop."""
        size = torch.tensor([[height, width]], dtype=torch.float32, device=device).expand(n, 2)
        return SizeConditioning(size, torch.zeros_like(size), size)

    def time_ids(self, requires_aesthetics_score: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) time ids, each (n, 6) or (n, 5), float32."""
        if requires_aesthetics_score:
            score = torch.full_like(self.original_size[:, :1], self.aesthetic_score)
            positive = torch.cat([self.original_size, self.crop_top_left, score], dim=1)
            # diffusers' negative_crops_coords_top_left defaults to (0, 0)
            negative = torch.cat([self.original_size, torch.zeros_like(self.crop_top_left),
                                  torch.full_like(score, self.negative_aesthetic_score)], dim=1)
            return positive.float(), negative.float()
        positive = torch.cat([self.original_size, self.crop_top_left, self.target_size], dim=1).float()
        return positive, positive
