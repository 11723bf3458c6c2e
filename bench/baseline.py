"""The baseline: the same method written the straightforward way, as the published code runs it.

ultralytics' ``YOLO.predict`` finds people; diffusers' pipelines process one person at a time, in
detection order, each on a square crop (``crops``) at the UNet's default resolution:

- inpaint: ``StableDiffusionXLInpaintPipeline`` at the run's strength over the person's mask;
- refsd: ``StableDiffusionInpaintPipeline`` removes the person (strength 1), the same Anny avatar
  as refsd-trt's is fitted and rendered into the crop (``refsd_trt.avatar``, batch of one), and
  ``StableDiffusionXLImg2ImgPipeline`` refines the crop at the run's strength.

Same weights (the preset's), steps, guidance, scheduler, strength, prompts and seeds as refsd-trt.
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
from refsd_trt.models import loaders, tiny_zoo
from refsd_trt.presets import Preset, weights_search_path
from refsd_trt.stages import StageTimer
from refsd_trt.types import PersonDetections

SCHEDULERS = {"euler": "EulerDiscreteScheduler", "ddim": "DDIMScheduler", "dpmpp": "DPMSolverMultistepScheduler"}
REMOVAL_PROMPT = "background"  # what the removal pass paints where the person was
CROP_SCALE = 1.1  # the published code's crop: 1.1 × the longer box side


def model_path(preset: Preset, role: str) -> Path:
    """The local file or folder of a preset's model (tiny-zoo entries are built on first use)."""
    ref = preset.models[role]
    if preset.zoo:
        folder = tiny_zoo.entry_path(ref)
        weights = tiny_zoo.ENTRIES[ref].weights_file
        return folder / weights if weights else folder
    if ref.endswith(".pt"):
        return loaders.resolve_weights_file(ref, weights_search_path())
    return loaders.resolve_model_dir(ref)


class BaselineSide:
    name = "baseline"
    engines: Mapping = {}  # diffusers and ultralytics run plain torch modules: nothing to instrument

    def __init__(self, preset: Preset, config: RunConfig, method: str, device: torch.device):
        import diffusers

        from refsd_trt.export.ultralytics_offline import yolo_class

        self.config, self.method, self.device = config, method, device
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.yolo = yolo_class()(str(model_path(preset, "detector")))
        vae = loaders.load_vae(model_path(preset, "vae"), torch_dtype=self.dtype) if "vae" in preset.models else None

        def pipeline(cls_name: str, role: str):
            extra = {"vae": vae} if vae is not None and "XL" in cls_name else {}
            pipe = getattr(diffusers, cls_name).from_pretrained(
                model_path(preset, role), torch_dtype=self.dtype, local_files_only=True, **extra)
            scheduler_cls = getattr(diffusers, SCHEDULERS[config.scheduler])
            pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
            pipe.set_progress_bar_config(disable=True)
            return pipe.to(device)

        if method == "inpaint":
            self.inpainter = pipeline("StableDiffusionXLInpaintPipeline", "inpainter")
        elif method == "refsd":
            from refsd_trt.avatar.anny_body import anny_body

            self.remover = pipeline("StableDiffusionInpaintPipeline", "removal")
            self.refiner = pipeline("StableDiffusionXLImg2ImgPipeline", "refiner")
            self.body = anny_body(device=str(device))
        else:
            raise ValueError(f"the baseline implements the inpaint and refsd methods, not {method!r}")

    def decode(self, paths: Sequence[Path]) -> list[np.ndarray]:
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonDetections]:
        # ultralytics takes numpy images as BGR (OpenCV's order); retina masks come at image size.
        results = self.yolo.predict([im[..., ::-1] for im in images], conf=self.config.conf, iou=0.7,
                                    classes=[0], device=str(self.device), retina_masks=True, verbose=False)
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

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def _diffusion_kwargs(self, prompt: PersonPrompt, size: int) -> dict:
        c = self.config
        return {"negative_prompt": c.negative_prompt, "num_inference_steps": c.steps,
                "guidance_scale": c.guidance_scale, "generator": self._generator(prompt.seed),
                "height": size, "width": size}

    def _person(self, image: np.ndarray, found: PersonDetections, j: int, prompt: PersonPrompt,
                timer: StageTimer) -> None:
        height, width = image.shape[:2]
        box = found.boxes[j].tolist()
        mask = found.masks[j].cpu().numpy()
        crop = square_crop(box, height, width, CROP_SCALE)
        if self.method == "inpaint":
            size = _default_size(self.inpainter)
            with timer("merge"):
                pixels, mask_image = cut(image, crop, size), cut_mask(mask, crop, size)
            with timer("refine"):
                result = self.inpainter(prompt=prompt.prompt, image=pixels, mask_image=mask_image,
                                        strength=self.config.strength, **self._diffusion_kwargs(prompt, size)).images[0]
            with timer("merge"):
                paste(image, result, crop, mask)
            return

        size = _default_size(self.refiner)
        with timer("merge"):
            pixels, mask_image = cut(image, crop, size), cut_mask(mask, crop, size)
        with timer("remove"):
            removed = self.remover(prompt=REMOVAL_PROMPT, image=pixels, mask_image=mask_image, strength=1.0,
                                   **self._diffusion_kwargs(prompt, size)).images[0]
        with timer("fit"):
            fit = self._fit(found, j, prompt, (height, width))
        with timer("render"):
            composite, alpha = self._render(fit, prompt, removed, crop, size)
        with timer("refine"):
            result = self.refiner(prompt=prompt.prompt, image=composite, strength=self.config.strength,
                                  **self._diffusion_kwargs(prompt, size)).images[0]
        with timer("merge"):
            x0, y0, x1, y1 = crop
            where = mask.copy()
            where[y0:y1, x0:x1] |= np.asarray(alpha.resize((x1 - x0, y1 - y0), Image.NEAREST)) > 0
            paste(image, result, crop, where)

    def _fit(self, found: PersonDetections, j: int, prompt: PersonPrompt, size: tuple[int, int]):
        from refsd_trt.avatar.fitting import fit_boxes, fit_keypoints

        box = found.boxes[j:j + 1].to(self.device)
        shape = self.body.sample_shape(prompt.attributes, prompt.seed)[None]
        if found.keypoints is not None:
            return fit_keypoints(self.body, found.keypoints[j:j + 1].to(self.device), box, size, shape)
        return fit_boxes(self.body, box, size, shape)

    def _render(self, fit, prompt: PersonPrompt, removed: Image.Image, crop: tuple[int, int, int, int],
                size: int) -> tuple[Image.Image, Image.Image]:
        """The avatar drawn over the removal result, and its alpha, at crop resolution."""
        from refsd_trt.avatar.clothing import clothing_palette, vertex_colors
        from refsd_trt.avatar.records import Meshes
        from refsd_trt.avatar.render import render

        with torch.no_grad():
            vertices = self.body(fit.params).vertices
            colors = vertex_colors(self.body.vertex_regions, clothing_palette(prompt.attributes, prompt.seed)[None])
            box = torch.tensor([crop], dtype=vertices.dtype, device=self.device)
            drawn = render(Meshes(vertices, self.body.faces, colors.to(vertices)), fit.camera.crop(box, (size, size)),
                           (size, size))
        rgb = drawn.rgb[0].permute(1, 2, 0).cpu().numpy()
        alpha = drawn.alpha[0, 0].cpu().numpy()[..., None]
        background = np.asarray(removed.convert("RGB").resize((size, size)), dtype=np.float32) / 255
        composite = background * (1 - alpha) + rgb * alpha
        return (Image.fromarray((composite * 255).round().astype(np.uint8)),
                Image.fromarray((alpha[..., 0] * 255).astype(np.uint8)))


def _default_size(pipe) -> int:
    """The resolution diffusers' pipelines default to: the UNet's sample size in pixels."""
    return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
