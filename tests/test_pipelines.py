"""The two methods end to end on the tiny zoo (CPU, small crops, refsd with the Anny avatars): shapes,
what changes and what must not, images without people, the avatars' crops, and no host reads on the
hot path."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_diffusion import box_mask, make_image, no_host_reads, torch_components

from refsd_trt.attributes import PersonPrompt
from refsd_trt.config import RunConfig
from refsd_trt.methods import inpaint_settings, refsd_settings
from refsd_trt.pipelines.avatars import BodyModelAvatars, StandInAvatar
from refsd_trt.pipelines.inpaint import InpaintMethod
from refsd_trt.pipelines.refsd import RefsdMethod
from refsd_trt.presets import PRESETS
from refsd_trt.types import PersonDetections

CROP = 64  # crop resolution: small keeps the suite quick; the diffusion tests cover 256²


def person(height: int, width: int, top: int, left: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A rectangular person: (mask (H, W) bool, box (4,) xyxy)."""
    mask = torch.zeros((height, width), dtype=torch.bool)
    mask[top:top + h, left:left + w] = True
    return mask, torch.tensor([left, top, left + w, top + h], dtype=torch.float32)


def scene() -> tuple[list[torch.Tensor], list[PersonDetections], list[list[PersonPrompt]]]:
    """Two images of different sizes: two overlapping people in the first, one in the second."""
    layouts = [(160, 192, [(10, 20, 60, 30), (30, 40, 50, 40)]), (176, 144, [(20, 30, 70, 24)])]
    images, detections, prompts = [], [], []
    for k, (height, width, people) in enumerate(layouts):
        image = make_image(10 + k, size=max(height, width))[0, :, :height, :width]
        images.append((image * 255).round().to(torch.uint8))
        masks, boxes = zip(*(person(height, width, *p) for p in people))
        detections.append(PersonDetections(torch.stack(boxes), torch.full((len(people),), 0.9), torch.stack(masks)))
        prompts.append([PersonPrompt({}, f"a photo of a {w} wearing a red shirt", seed=100 * k + j)
                        for j, w in enumerate(["man", "woman"][:len(people)])])
    return images, detections, prompts


def untouched(detections: PersonDetections, reach: int) -> torch.Tensor:
    """(H, W) bool: pixels farther than ``reach`` (Chebyshev) from every person's crop region."""
    grown = torch.nn.functional.max_pool2d(detections.masks.any(0)[None, None].float(), 2 * reach + 1, 1, reach)
    return grown[0, 0] == 0


# The settings come from one RunConfig through the methods' own builders; only the crop sizes shrink.
CONFIG = RunConfig(steps=2, removal_steps=2, dilate_px=3, feather_px=2, crop_batch_size=2)


@pytest.fixture(scope="module")
def methods(zoo):
    inpaint = InpaintMethod(torch_components(zoo("sdxl-inpaint")),
                            replace(inpaint_settings(CONFIG.resolved(PRESETS["inpaint"])), size=CROP))
    refsd = RefsdMethod(torch_components(zoo("sd-inpaint")), torch_components(zoo("sdxl")),
                        replace(refsd_settings(CONFIG.resolved(PRESETS["refsd"])), removal_size=CROP,
                                refine_size=CROP))
    return {"inpaint": inpaint, "refsd": refsd}


@pytest.mark.parametrize("name", ["inpaint", "refsd"])
def test_method_replaces_people_and_keeps_the_rest(methods, name):
    images, detections, prompts = scene()
    outputs = methods[name](images, detections, prompts)
    assert len(outputs) == 2
    for image, det, out in zip(images, detections, outputs):
        assert out.shape == image.shape and out.dtype == torch.float32
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        original = image.float() / 255
        # Far from everyone (beyond dilation + feathering + crop margin) the input survives exactly.
        far = untouched(det, reach=40)
        assert far.any()
        assert torch.allclose(out[:, far], original[:, far], atol=1e-6)
        # Every person's pixels were repainted.
        for mask in det.masks:
            assert (out[:, mask] - original[:, mask]).abs().mean() > 0.02


@pytest.mark.parametrize("name", ["inpaint", "refsd"])
def test_images_without_people_pass_through(methods, name):
    images, detections, prompts = scene()
    empty = PersonDetections.empty(*images[1].shape[-2:])
    outputs = methods[name]([images[0], images[1]], [detections[0], empty], [prompts[0], []])
    assert torch.allclose(outputs[1], images[1].float() / 255, atol=1e-6)
    assert not torch.allclose(outputs[0], images[0].float() / 255, atol=1e-2)
    nobody = methods[name]([images[1]], [empty], [[]])
    assert torch.allclose(nobody[0], images[1].float() / 255, atol=1e-6)


@pytest.mark.parametrize("name", ["inpaint", "refsd"])
def test_method_reads_nothing_back_to_the_host(methods, name):
    images, detections, prompts = scene()
    methods[name](images, detections, prompts)  # first call: prompt caches fill (host tokenization)
    with no_host_reads():
        methods[name](images, detections, prompts)


def test_stand_in_avatar_is_a_grey_silhouette_of_the_mask():
    mask, box = person(40, 40, 10, 12, 20, 10)
    det = PersonDetections(box[None], torch.ones(1), mask[None])
    crop = box_mask(n=1, top=10, left=12, height=20, width=10, size=40)  # the mask, cut at its own box
    (got,) = StandInAvatar()([det], [torch.tensor([[0.0, 0.0, 40.0, 40.0]])], 40, [[PersonPrompt({}, "", 0)]])
    assert torch.equal(got.alpha, crop)
    assert torch.equal(got.rgb, 0.5 * crop.expand(-1, 3, -1, -1))


def test_body_model_avatars_fill_the_crop_boxes():
    _, detections, prompts = scene()
    avatars = BodyModelAvatars()
    det, people = detections[0], prompts[0]
    boxes = det.boxes + torch.tensor([-5.0, -5.0, 5.0, 5.0])
    (got,) = avatars([det], [boxes], 48, [people])
    assert got.rgb.shape == (2, 3, 48, 48) and got.alpha.shape == (2, 1, 48, 48)
    assert (got.alpha.flatten(1).mean(1) > 0.1).all()  # each avatar fills a good part of its crop
    assert torch.equal(got.rgb, got.rgb * got.alpha)  # black where there is no avatar
    (empty,) = avatars([PersonDetections.empty(160, 192)], [torch.zeros((0, 4))], 48, [[]])
    assert empty.rgb.shape == (0, 3, 48, 48) and empty.alpha.shape == (0, 1, 48, 48)


def far_apart_scene() -> tuple[list[torch.Tensor], list[PersonDetections], list[list[PersonPrompt]]]:
    """Two 200² images with two people each, far enough apart that no crop reaches another person."""
    layouts = [[(10, 10, 40, 20), (140, 150, 40, 24)], [(20, 140, 50, 30), (130, 20, 44, 22)]]
    images, detections, prompts = [], [], []
    for k, people in enumerate(layouts):
        images.append((make_image(20 + k, size=200)[0] * 255).round().to(torch.uint8))
        masks, boxes = zip(*(person(200, 200, *p) for p in people))
        detections.append(PersonDetections(torch.stack(boxes), torch.full((2,), 0.9), torch.stack(masks)))
        prompts.append([PersonPrompt({}, f"a photo of person {k}{j}", seed=7 + 10 * k + j) for j in range(2)])
    return images, detections, prompts


def test_batch_of_images_equals_each_person_alone(methods):
    """Several images with several people, run as one batch (crops from both images share UNet
    calls), give each person the result they get when they are the only person processed."""
    images, detections, prompts = far_apart_scene()
    together = methods["inpaint"](images, detections, prompts)
    for i, (image, det) in enumerate(zip(images, detections)):
        for j in range(len(det)):
            alone = PersonDetections(det.boxes[j:j + 1], det.scores[j:j + 1], det.masks[j:j + 1])
            single = methods["inpaint"]([image], [alone], [[prompts[i][j]]])[0]
            region = det.masks[j]
            assert (together[i][:, region] - single[:, region]).abs().max() < 1e-4
            assert (together[i][:, region] - image[:, region].float() / 255).abs().mean() > 0.02


def test_refinement_feather_is_in_image_pixels_like_the_removals():
    """refsd's two stages share one feather_px in image pixels: the avatar's crop-space alpha,
    feathered through the image, matches the removal's image-space feather of the same region, at a
    crop of 2 image pixels per crop pixel (the old crop-pixel feather was twice as wide here)."""
    from refsd_trt.kernels import feather
    from refsd_trt.pipelines.crops import crop_masks, feather_in_image

    canvas, box = torch.zeros(3, 200, 200), torch.tensor([[20.0, 20.0, 148.0, 148.0]])  # side 128 -> 64
    avatar = torch.zeros(1, 1, 64, 64)
    avatar[..., 16:48, 16:48] = 1  # image pixels 52..115
    region = torch.zeros(1, 1, 200, 200)
    region[..., 52:116, 52:116] = 1
    removal_like = crop_masks([feather(region, 4)], [box], 64)
    refined = feather_in_image(avatar, [box], [canvas], 4)
    assert (refined - removal_like).abs().max() < 0.03
    # 4 image pixels feather out to 8 image pixels = 4 crop pixels beyond the avatar, no farther.
    assert refined[0, 0, 32, :11].abs().max() == 0 and refined[0, 0, 32, 12] > 0.05
    assert refined[0, 0, 18:46, 18:46].min() == 1.0
    assert (feather(avatar, 4) - removal_like).abs().max() > 0.2  # crop pixels: a different edge
