"""Parity of the diffusion core with diffusers' own pipelines (tiny zoo, CPU, torch engines), and
batching: a crop's result does not depend on which crops share its batch."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path

import pytest
import torch
from refsd_trt.engine import Engine
from refsd_trt.engine.factory import load_engine
from refsd_trt.export.specs import AxisRange

from refsd_trt.diffusion import CropBatch, DiffusionComponents, DiffusionStage, StageSettings, load_components

SIZE = 256  # the tiny models' native resolution (32² latents)
TOLERANCE = 1e-3  # max abs difference of decoded crops in [0, 1]


@functools.cache
def torch_components(folder: Path, scheduler: str | None = None) -> DiffusionComponents:
    """Eager torch engines through the project's engine factory, one set per folder and scheduler."""
    return load_components(folder, lambda name: load_engine(folder, name, backend="torch"), scheduler)


def make_image(seed: int, n: int = 1, size: int = SIZE) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: smooth colour gradients plus texture, so the VAE sees structure."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                        torch.full((size, size), 0.5)])
    return (0.7 * base + 0.3 * torch.rand((n, 3, size, size), generator=g)).clamp(0, 1)


def box_mask(n: int = 1, top: int = 64, left: int = 80, height: int = 150, width: int = 90,
             size: int = SIZE) -> torch.Tensor:
    mask = torch.zeros((n, 1, size, size))
    mask[:, :, top:top + height, left:left + width] = 1.0
    return mask


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """The stage's [-1, 1] output in diffusers' output_type="pt" space."""
    return (images / 2 + 0.5).clamp(0, 1)


def assert_parity(images: torch.Tensor, expected: torch.Tensor) -> None:
    diff = (to_unit(images) - expected).abs().max().item()
    print(f"max abs diff vs diffusers: {diff:.2e}")  # the measured figure, shown with pytest -rA
    assert diff <= TOLERANCE, f"max abs diff {diff:.2e}"


def reference(pipeline_cls: str, folder: Path, scheduler: str | None, **call) -> torch.Tensor:
    import diffusers

    pipe = getattr(diffusers, pipeline_cls).from_pretrained(folder)
    if scheduler:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        # padding_mask_crop stays None: the output is then the whole decoded image, with no
        # overlay onto the original, which is what the stage returns.
        return pipe(output_type="pt", height=SIZE, width=SIZE, **call).images


# Euler (the checkpoint's), Euler ancestral (draws noise while stepping, from the crop's generator),
# DPM++ 2M (multistep history). DDIM runs in the SD inpainting test.
@pytest.mark.parametrize("scheduler", [None, "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler"])
def test_sdxl_inpaint_matches_diffusers(zoo, scheduler):
    folder = zoo("sdxl-inpaint")
    image, mask, prompt, seed = make_image(0), box_mask(), "a photo of a woman wearing a red dress", 11
    settings = StageSettings(steps=5, strength=0.6, guidance_scale=7.5, negative_prompt=None, batch_size=4)
    expected = reference("StableDiffusionXLInpaintPipeline", folder, scheduler, prompt=prompt, image=image,
                         mask_image=mask, strength=settings.strength, num_inference_steps=settings.steps,
                         guidance_scale=settings.guidance_scale, generator=torch.Generator().manual_seed(seed))
    stage = DiffusionStage(torch_components(folder, scheduler), settings)
    got = stage.run(CropBatch(image * 2 - 1, [prompt], [torch.Generator().manual_seed(seed)], masks=mask))
    assert_parity(got.images, expected)


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_sd_inpaint_matches_diffusers(zoo, strength):
    """refsd's removal stage (full strength: pure-noise start) on the SD inpainting model, DDIM."""
    folder = zoo("sd-inpaint")
    image, mask, seed = make_image(1), box_mask(top=30, left=100, height=200, width=60), 5
    settings = StageSettings(steps=6, strength=strength, guidance_scale=7.5, negative_prompt="person",
                             batch_size=4)
    expected = reference("StableDiffusionInpaintPipeline", folder, None, prompt="street background", image=image,
                         mask_image=mask, strength=strength, num_inference_steps=settings.steps,
                         guidance_scale=settings.guidance_scale, negative_prompt=settings.negative_prompt,
                         generator=torch.Generator().manual_seed(seed))
    stage = DiffusionStage(torch_components(folder), settings)
    got = stage.run(CropBatch(image * 2 - 1, ["street background"], [torch.Generator().manual_seed(seed)],
                              masks=mask))
    assert_parity(got.images, expected)


def test_sdxl_img2img_matches_diffusers(zoo):
    """refsd's refinement: SDXL img2img at strength βd, Euler (the checkpoint's scheduler)."""
    folder = zoo("sdxl")
    image, prompt, seed = make_image(2), "a photo of an old man wearing a blue jacket", 3
    # A negative prompt: SDXL then encodes it with both encoders (not zeros), pooled from the second.
    settings = StageSettings(steps=6, strength=0.5, guidance_scale=5.0, negative_prompt="blurry cartoon",
                             batch_size=4)
    expected = reference("StableDiffusionXLImg2ImgPipeline", folder, None, prompt=prompt, image=image,
                         strength=settings.strength, num_inference_steps=settings.steps,
                         guidance_scale=settings.guidance_scale, negative_prompt=settings.negative_prompt,
                         generator=torch.Generator().manual_seed(seed))
    stage = DiffusionStage(torch_components(folder), settings)
    got = stage.run(CropBatch(image * 2 - 1, [prompt], [torch.Generator().manual_seed(seed)]))
    assert_parity(got.images, expected)


@pytest.mark.parametrize("fixed_shapes", [False, True], ids=["short-last-batch", "padded-last-batch"])
def test_batched_crops_equal_each_crop_alone(zoo, fixed_shapes):
    """3 crops, batches of 2 (the second short, or padded for fixed-shape engines): every crop as if
    it ran by itself (128² to keep it quick). Euler ancestral draws noise at every step, so the
    per-crop step generators are covered too."""
    components = torch_components(zoo("sdxl-inpaint"), "EulerAncestralDiscreteScheduler")
    components.unet.fixed_shapes = fixed_shapes
    calls = []
    real_run = components.unet.run
    components.unet.run = lambda feeds, outputs=None, stream=None: (
        calls.append(feeds["sample"].shape[0]), real_run(feeds, outputs, stream))[1]
    images, masks = make_image(3, n=3, size=128) * 2 - 1, box_mask(n=3, top=30, left=40, height=80, width=50, size=128)
    masks[1] = box_mask(top=10, left=10, height=50, width=100, size=128)[0]
    prompts = ["a photo of a child", "a photo of an old woman wearing a coat", "a man walking in a park"]
    seeds = [1, 2, 3]
    settings = StageSettings(steps=4, strength=0.6, guidance_scale=7.5, negative_prompt=None, batch_size=2)
    batched = DiffusionStage(components, settings).run(
        CropBatch(images, prompts, [torch.Generator().manual_seed(s) for s in seeds], masks=masks)).images
    alone = DiffusionStage(components, StageSettings(steps=4, strength=0.6, guidance_scale=7.5,
                                                     negative_prompt=None, batch_size=1))
    for i in range(3):
        single = alone.run(CropBatch(images[i:i + 1], prompts[i:i + 1], [torch.Generator().manual_seed(seeds[i])],
                                     masks=masks[i:i + 1])).images
        diff = (batched[i:i + 1] - single).abs().max().item()
        assert diff <= 1e-4, f"crop {i}: batched differs from alone by {diff:.2e}"
    # Strength 0.6 of 4 steps runs 2; with guidance every UNet call sees twice the crops, and the
    # short last batch is padded only for fixed-shape engines. (Later calls are the runs alone.)
    assert calls[:4] == [4, 4] + [4 if fixed_shapes else 2] * 2
    # Different prompts and seeds give different crops (the test would pass vacuously otherwise).
    assert (batched[0] - batched[2]).abs().max() > 1e-2


def test_prompts_are_encoded_once_while_cached(zoo):
    from refsd_trt.diffusion import PromptEncoder

    components = torch_components(zoo("sdxl"))
    calls = []
    counted = [CountingEngine(e, calls, max_batch=2) for e in components.text_encoders]
    encoder = PromptEncoder(DiffusionComponents(**{**components.__dict__, "text_encoders": tuple(counted)}))
    first = encoder.encode(["a boy", "a girl", "a boy", "a man"])
    again = encoder.encode(["a girl", "a boy"])
    # Three distinct prompts, at most two per call (the engines' batch range), per encoder.
    assert [len(batch) for batch in calls] == [2, 2, 1, 1]
    assert torch.equal(first.hidden[1], again.hidden[0]) and torch.equal(first.pooled[0], again.pooled[1])
    assert first.hidden.shape == (4, 77, 64) and first.pooled.shape == (4, 32)

    small = PromptEncoder(DiffusionComponents(**{**components.__dict__, "text_encoders": tuple(counted)}), capacity=2)
    calls.clear()
    small.encode(["a boy", "a girl", "a man"])  # more than it keeps: all three still come back
    small.encode(["a man", "a girl"])  # the two most recent are kept
    small.encode(["a boy"])  # evicted: encoded again
    assert [len(batch) for batch in calls] == [2, 2, 1, 1, 1, 1]


class CountingEngine:
    """Forwards to an engine, records the batch of each call, and narrows the batch range."""

    def __init__(self, engine: Engine, calls: list, max_batch: int):
        self.engine, self.calls, self.device = engine, calls, engine.device
        self.spec = dataclasses.replace(engine.spec, axes={**engine.spec.axes, "batch": AxisRange(1, 1, max_batch)})

    def run(self, feeds, outputs=None):
        self.calls.append(feeds["input_ids"])
        return self.engine.run(feeds, outputs)


class HostReadError(AssertionError):
    pass


@contextlib.contextmanager
def no_host_reads():
    """Fails any ``Tensor.cpu()/.numpy()/.item()/.tolist()`` inside the block: the calls that copy a
    device tensor back to the host and stall the GPU stream."""
    saved = {name: getattr(torch.Tensor, name) for name in ("cpu", "numpy", "item", "tolist")}

    def refuse(name):
        def method(self, *args, **kwargs):
            raise HostReadError(f"Tensor.{name}() on the hot path (shape {tuple(self.shape)})")
        return method

    try:
        for name in saved:
            setattr(torch.Tensor, name, refuse(name))
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


@pytest.mark.parametrize("folder, scheduler", [("sdxl-inpaint", "DPMSolverMultistepScheduler"),
                                               ("sd-inpaint", None), ("sdxl", None)])
def test_stage_reads_nothing_back_to_the_host(zoo, folder, scheduler):
    components = torch_components(zoo(folder), scheduler)
    inpainting = components.unet_in_channels == 9
    stage = DiffusionStage(components, StageSettings(steps=3, strength=0.7, guidance_scale=5.0,
                                                     negative_prompt=None, batch_size=2))
    # 3 crops in batches of 2: the padded batch runs under the guard too. 128² keeps it quick.
    crops = CropBatch(make_image(4, n=3, size=128) * 2 - 1, ["a photo of a man"] * 3,
                      [torch.Generator().manual_seed(s) for s in range(3)],
                      masks=box_mask(n=3, top=20, left=30, height=60, width=40, size=128) if inpainting else None)
    with no_host_reads():
        stage.run(crops)
    with pytest.raises(HostReadError), no_host_reads():  # the guard itself works
        crops.images.sum().item()


def test_batches_must_fit_the_engines_batch_range(zoo):
    components = torch_components(zoo("sdxl"))
    limit = components.unet.spec.axes["batch"].max
    with pytest.raises(ValueError, match="batch axis ends"):
        DiffusionStage(components, StageSettings(steps=2, strength=0.5, guidance_scale=5.0,
                                                 negative_prompt=None, batch_size=limit // 2 + 1))


@pytest.mark.parametrize("aesthetics", [False, True])
def test_time_ids_match_diffusers(aesthetics):
    """Against diffusers' own ``_get_add_time_ids`` (SDXL base layout, and the refiner's with scores)."""
    from types import SimpleNamespace

    from diffusers import StableDiffusionXLImg2ImgPipeline

    from refsd_trt.diffusion import SizeConditioning

    count = 5 if aesthetics else 6
    fake = SimpleNamespace(config=SimpleNamespace(requires_aesthetics_score=aesthetics),
                           unet=SimpleNamespace(config=SimpleNamespace(addition_time_embed_dim=8),
                                                add_embedding=SimpleNamespace(linear_1=SimpleNamespace(
                                                    in_features=8 * count + 32))))
    sizes = [((300, 200), (10, 20), (256, 256)), ((64, 96), (0, 0), (128, 128))]
    expected = [StableDiffusionXLImg2ImgPipeline._get_add_time_ids(
        fake, original, crop, target, 6.0, 2.5, original, (0, 0), target, torch.float32, text_encoder_projection_dim=32)
        for original, crop, target in sizes]
    cond = SizeConditioning(*(torch.tensor([s[k] for s in sizes], dtype=torch.float32) for k in range(3)))
    positive, negative = cond.time_ids(aesthetics)
    assert torch.equal(positive, torch.cat([e[0] for e in expected]))
    assert torch.equal(negative, torch.cat([e[1] for e in expected]))


def test_float16_engines_run_the_stage(zoo):
    """Half-precision engines (what TensorRT runs): feeds are cast at the engine boundary, latents and
    guidance stay float32, and the result stays close to float32 engines'."""
    folder = zoo("sdxl-inpaint")
    half = load_components(folder, lambda name: load_engine(folder, name, backend="torch", precision="float16"))
    settings = StageSettings(steps=3, strength=0.7, guidance_scale=5.0, negative_prompt=None, batch_size=1)

    def crops():
        return CropBatch(make_image(6, size=64) * 2 - 1, ["a photo of a man"], [torch.Generator().manual_seed(0)],
                         masks=box_mask(top=10, left=20, height=40, width=20, size=64))

    got = DiffusionStage(half, settings).run(crops()).images
    want = DiffusionStage(torch_components(folder), settings).run(crops()).images
    assert got.dtype == torch.float32
    assert (got - want).abs().max() < 0.05
