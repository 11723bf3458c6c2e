"""The baseline: the same method written the straightforward way, as the published code runs it.

ultralytics' ``YOLO.predict`` finds people; diffusers' pipelines process one person at a time, in
detection order, each on a square crop (``crops``) at the UNet's default resolution:

- inpaint: ``StableDiffusionXLInpaintPipeline`` at the method's strength over the person's mask;
- refsd: the pose model runs too (as in refsd-trt); ``StableDiffusionInpaintPipeline`` removes the person (strength 1, the method's removal
  prompts), refsd-trt's own avatar renderer (passed in, so both sides draw the same avatar) is
  called for that one person, and ``StableDiffusionXLImg2ImgPipeline`` refines the crop at the
  method's strength.

Same weights (the preset's), and the settings refsd-trt's method runs with (steps, guidance,
strength, prompts, crop scale; passed in), the same scheduler, per-person prompts and seeds.
Where the published code is simpler than refsd-trt it stays so: no mask dilation, no feathering,
each removal repaints only its own person, and crops are pasted in detection order.
Decoding and encoding use Pillow directly. ultralytics is AGPL-3.0: it is imported here, in the
benchmark, never on refsd-trt's runtime path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from refsd_trt.attributes import DEFAULT_TEMPLATE, PersonPrompt, person_prompt
from refsd_trt.bench.crops import cut, cut_mask, paste, square_crop
from refsd_trt.bench.sides import OTHER, Anonymized
from refsd_trt.config import RunConfig
from refsd_trt.diffusion.components import SCHEDULERS
from refsd_trt.methods import model_path
from refsd_trt.models import loaders
from refsd_trt.pipelines.avatars import Avatars
from refsd_trt.pipelines.inpaint import InpaintSettings
from refsd_trt.pipelines.refsd import RefsdSettings
from refsd_trt.presets import Preset
from refsd_trt.stages import StageTimer
from refsd_trt.types import PersonDetections


class BaselineSide:
    name = "baseline"
    engines: Mapping = {}  # diffusers and ultralytics run plain torch modules: nothing to instrument

    def __init__(self, preset: Preset, config: RunConfig, settings: InpaintSettings | RefsdSettings,
                 device: torch.device, avatars: Avatars | None = None):
        """``settings``: the refsd-trt method's own (its type picks the method); ``avatars``: its
        avatar renderer (refsd only)."""
        import diffusers

        from refsd_trt.export.ultralytics_offline import yolo_class

        self.config, self.settings, self.device = config, settings, device
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.yolo = yolo_class()(str(model_path(preset, "detector")))
        # refsd-trt's refsd method also runs the pose model on every image (keypoints pose the avatars).
        self.pose = yolo_class()(str(model_path(preset, "pose"))) if isinstance(settings, RefsdSettings) else None
        vae = loaders.load_vae(model_path(preset, "vae"), dtype=self.dtype) if "vae" in preset.models else None

        def pipeline(cls_name: str, role: str):
            extra = {"vae": vae} if vae is not None and "XL" in cls_name else {}
            pipe = getattr(diffusers, cls_name).from_pretrained(
                model_path(preset, role), torch_dtype=self.dtype, local_files_only=True, **extra)
            scheduler_cls = getattr(diffusers, SCHEDULERS[config.scheduler])
            pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
            pipe.set_progress_bar_config(disable=True)
            return pipe.to(device)

        if isinstance(settings, InpaintSettings):
            self.inpainter = pipeline("StableDiffusionXLInpaintPipeline", "inpainter")
        else:
            if avatars is None:
                raise ValueError("the refsd baseline needs refsd-trt's avatar renderer")
            self.remover = pipeline("StableDiffusionInpaintPipeline", "removal")
            self.refiner = pipeline("StableDiffusionXLImg2ImgPipeline", "refiner")
            self.avatars = avatars

    def decode(self, paths: Sequence[Path]) -> list[np.ndarray]:
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonDetections]:
        # ultralytics takes numpy images as BGR (OpenCV's order); retina masks come at image size.
        bgr = [im[..., ::-1] for im in images]
        options = {"conf": self.config.conf, "iou": 0.7, "classes": [0], "device": str(self.device), "verbose": False}
        threads = torch.get_num_threads()
        try:
            results = self.yolo.predict(bgr, retina_masks=True, **options)
            if self.pose is not None:  # timed like refsd-trt's pose pass; the baseline does not use its keypoints
                self.pose.predict(bgr, **options)
        finally:
            # ultralytics' device set-up sets torch's threads process-wide to cpu_count - 1 (1 on two
            # cores): left so, the diffusers pipelines (and refsd-trt's torch ops) would run on one.
            torch.set_num_threads(threads)
        found = []
        for image, r in zip(images, results):
            height, width = image.shape[:2]
            if len(r.boxes) == 0:
                found.append(PersonDetections.empty(height, width))
                continue
            masks = r.masks.data.bool().cpu() if r.masks is not None else torch.zeros((len(r.boxes), height, width),
                                                                                     dtype=torch.bool)
            found.append(PersonDetections(r.boxes.xyxy.float().cpu(), r.boxes.conf.float().cpu(), masks))
        return found

    def anonymize(self, images: Sequence[np.ndarray], people: Sequence[PersonDetections],
                  keys: Sequence[str]) -> Anonymized:
        timer = StageTimer(self.device, sync=True)
        outputs, counts = [], []
        template = self.config.prompt or DEFAULT_TEMPLATE
        began = time.perf_counter()
        for image, found, key in zip(images, people, keys):
            out = image.copy()
            for j in range(len(found)):
                prompt = person_prompt(self.config.seed, key, j, self.config.attributes, template)
                self._person(out, found, j, prompt, timer)
            outputs.append(out)
            counts.append(len(found))
        stages = dict(timer.seconds)
        stages[OTHER] = time.perf_counter() - began - sum(stages.values())
        return Anonymized(outputs, counts, stages)

    def encode(self, images: Sequence[np.ndarray], folder: Path) -> None:
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / f"{i:04d}.png")

    # -----------------------------------------------------------------------------------------

    def _kwargs(self, seed: int, size: int, steps: int, guidance: float, negative: str | None) -> dict:
        return {"num_inference_steps": steps, "guidance_scale": guidance, "negative_prompt": negative,
                "generator": torch.Generator(device=self.device).manual_seed(seed), "height": size, "width": size}

    def _person(self, image: np.ndarray, found: PersonDetections, j: int, prompt: PersonPrompt,
                timer: StageTimer) -> None:
        s = self.settings
        mask = found.masks[j].cpu().numpy()
        crop = square_crop(found.boxes[j].tolist(), *image.shape[:2], s.crop_scale)
        if isinstance(s, InpaintSettings):
            size = _default_size(self.inpainter)
            with timer("merge"):
                pixels, mask_image = cut(image, crop, size), cut_mask(mask, crop, size)
            with timer("refine"):
                result = self.inpainter(prompt=prompt.prompt, image=pixels, mask_image=mask_image, strength=s.strength,
                                        **self._kwargs(prompt.seed, size, s.steps, s.guidance_scale,
                                                       s.negative_prompt)).images[0]
            with timer("merge"):
                paste(image, result, crop, mask)
            return

        removal_size, size = _default_size(self.remover), _default_size(self.refiner)
        with timer("merge"):
            pixels, mask_image = cut(image, crop, removal_size), cut_mask(mask, crop, removal_size)
        with timer("remove"):
            removed = self.remover(prompt=s.removal_prompt, image=pixels, mask_image=mask_image, strength=1.0,
                                   **self._kwargs(prompt.seed, removal_size, s.removal_steps,
                                                  s.removal_guidance_scale, s.removal_negative_prompt)).images[0]
        with timer("render"):
            composite, alpha = self._render(found, j, prompt, removed, crop, size)
        with timer("refine"):
            result = self.refiner(prompt=prompt.prompt, image=composite, strength=s.strength,
                                  **self._kwargs(prompt.seed, size, s.steps, s.guidance_scale,
                                                 s.negative_prompt)).images[0]
        with timer("merge"):
            x0, y0, x1, y1 = crop
            where = mask.copy()
            where[y0:y1, x0:x1] |= np.asarray(alpha.resize((x1 - x0, y1 - y0), Image.NEAREST)) > 0
            paste(image, result, crop, where)

    def _render(self, found: PersonDetections, j: int, prompt: PersonPrompt, removed: Image.Image,
                crop: tuple[int, int, int, int], size: int) -> tuple[Image.Image, Image.Image]:
        """Person ``j``'s avatar (posed and rendered by refsd-trt's renderer, alone) drawn over the
        removal result, and its alpha, at crop resolution."""
        d, keypoints = self.device, found.keypoints
        one = PersonDetections(found.boxes[j:j + 1].to(d), found.scores[j:j + 1].to(d), found.masks[j:j + 1].to(d),
                               None if keypoints is None else keypoints[j:j + 1].to(d), found.mask_source)
        box = torch.tensor([crop], dtype=torch.float32, device=self.device)
        (drawn,) = self.avatars([one], [box], size, [[prompt]])
        rgb = drawn.rgb[0].permute(1, 2, 0).float().cpu().numpy()
        alpha = drawn.alpha[0, 0].float().cpu().numpy()[..., None]
        background = np.asarray(removed.convert("RGB").resize((size, size)), dtype=np.float32) / 255
        composite = background * (1 - alpha) + rgb * alpha
        return (Image.fromarray((composite * 255).round().astype(np.uint8)),
                Image.fromarray((alpha[..., 0] * 255).round().astype(np.uint8)))


def _default_size(pipe) -> int:
    """The resolution diffusers' pipelines default to: the UNet's sample size in pixels."""
    return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
