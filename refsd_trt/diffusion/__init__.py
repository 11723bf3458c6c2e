"""The diffusion core: prompt encoding, latent preparation and the denoising loop over diffusers'
schedulers, run on ``Engine``s (any backend) in fixed-size batches of crops."""

from refsd_trt.diffusion.components import SCHEDULERS, DiffusionComponents, EngineFactory, load_components
from refsd_trt.diffusion.prompts import PromptEmbeddings, PromptEncoder
from refsd_trt.diffusion.stage import CropBatch, DiffusionStage, StageResult, StageSettings
from refsd_trt.diffusion.time_ids import SizeConditioning

__all__ = [
    "SCHEDULERS", "CropBatch", "DiffusionComponents", "DiffusionStage", "EngineFactory", "PromptEmbeddings", "PromptEncoder",
    "SizeConditioning", "StageResult", "StageSettings", "load_components",
]
