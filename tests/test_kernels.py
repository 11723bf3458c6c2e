"""Numerical behaviour of refsd_trt.kernels on CPU tensors (the torch path)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from refsd_trt import kernels as K


def gradient_image(batch: int = 2, height: int = 20, width: int = 30) -> torch.Tensor:
    """(B, 2, H, W): channel 0 = 2x + 0.5y + 100b, channel 1 = -x, x/y the pixel index."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([torch.stack([2 * x + 0.5 * y + 100 * b, -x]) for b in range(batch)])


# --- conversions -----------------------------------------------------------------------------------


def test_uint8_float_round_trip_is_exact_for_all_values():
    values = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    signed, unit = K.to_float(values), K.u8_to_unit(values)
    assert signed.dtype == torch.float32 and unit.dtype == torch.float32
    assert signed.min() == -1 and signed.max() == 1 and unit.min() == 0 and unit.max() == 1
    assert torch.equal(K.to_uint8(signed), values)
    assert torch.equal(K.unit_to_u8(unit), values)


def test_to_uint8_rounds_and_clamps():
    x = torch.tensor([-3.0, -1.0, 2 / 255 * 10.4 - 1, 2 / 255 * 10.6 - 1, 1.0, 7.0, float("nan")])
    assert K.to_uint8(x).tolist() == [0, 0, 10, 11, 255, 255, 0]
    assert K.unit_to_u8(torch.tensor([-0.5, 0.5, 1.5])).tolist() == [0, 128, 255]


def test_to_float_rejects_float_input():
    with pytest.raises(TypeError):
        K.to_float(torch.zeros(1, 3, 2, 2))


# --- boxes -----------------------------------------------------------------------------------------


def test_square_boxes_centred_scaled_and_shifted_inside():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # 20 x 40, centre (20, 40)
    assert torch.allclose(K.square_boxes(boxes, scale=1.1), torch.tensor([[-2.0, 18.0, 42.0, 62.0]]))
    # fits in a 100 x 100 image: shifted right by 2, size kept
    assert torch.allclose(
        K.square_boxes(boxes, 1.1, image_size=(100, 100)), torch.tensor([[0.0, 18.0, 44.0, 62.0]])
    )
    # 30 px tall image: the 44 px square cannot fit vertically, it covers the whole height instead
    out = K.square_boxes(boxes, 1.1, image_size=(30, 100))
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 44.0, 44.0]]))


# --- crop_resize -----------------------------------------------------------------------------------


def test_crop_resize_of_gradient_matches_analytic_values():
    images = gradient_image()
    boxes = torch.tensor([[3.2, 4.1, 17.7, 12.9], [0.5, 0.5, 20.0, 10.0]])
    index = torch.tensor([1, 0])
    h, w = 5, 7
    crops = K.crop_resize(images, boxes, index, (h, w))
    assert crops.shape == (2, 2, h, w)
    for n in range(2):
        x1, y1, x2, y2 = boxes[n].tolist()
        xs = x1 + (torch.arange(w) + 0.5) * (x2 - x1) / w - 0.5  # sample points in pixel-index units
        ys = y1 + (torch.arange(h) + 0.5) * (y2 - y1) / h - 0.5
        expected0 = 2 * xs[None, :] + 0.5 * ys[:, None] + 100 * index[n]
        assert torch.allclose(crops[n, 0], expected0, atol=1e-4)
        assert torch.allclose(crops[n, 1], -xs[None, :].expand(h, w), atol=1e-4)


def test_crop_resize_integer_box_at_own_size_is_identity():
    images = torch.rand(3, 3, 16, 24)
    crops = K.crop_resize(images, torch.tensor([[5.0, 2.0, 13.0, 12.0]]), torch.tensor([2]), (10, 8))
    assert torch.allclose(crops[0], images[2, :, 2:12, 5:13], atol=1e-6)


def test_crop_resize_several_boxes_of_one_image():
    image = torch.rand(1, 2, 16, 24)
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [10.0, 8.0, 14.0, 12.0]])
    crops = K.crop_resize(image, boxes, torch.tensor([0, 0]), (4, 4))
    assert torch.allclose(crops[0], image[0, :, 0:4, 0:4], atol=1e-6)
    assert torch.allclose(crops[1], image[0, :, 8:12, 10:14], atol=1e-6)


def test_crop_resize_padding_outside_the_image():
    images = torch.rand(1, 1, 10, 10) + 1.0  # strictly positive
    box = torch.tensor([[-10.0, 0.0, 10.0, 10.0]])  # left half outside
    zeros = K.crop_resize(images, box, torch.tensor([0]), (10, 20))
    border = K.crop_resize(images, box, torch.tensor([0]), (10, 20), padding="border")
    assert torch.all(zeros[0, 0, :, :9] == 0)  # more than half a pixel outside: nothing but padding
    assert torch.allclose(border[0, 0, :, :10], images[0, 0, :, :1].expand(10, 10))
    assert torch.allclose(zeros[0, 0, :, 10:], images[0, 0]) and torch.allclose(
        border[0, 0, :, 10:], images[0, 0]
    )


def test_crop_resize_reads_bool_masks_and_empty_box_lists():
    masks = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    masks[0, 0, 2:6, 2:6] = True
    crops = K.crop_resize(
        masks, torch.tensor([[2.0, 2.0, 6.0, 6.0]]), torch.tensor([0]), (2, 2), mode="nearest"
    )
    assert crops.dtype == torch.float32 and torch.all(crops == 1)
    empty = K.crop_resize(masks, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), (3, 3))
    assert empty.shape == (0, 1, 3, 3)


# --- morphology ------------------------------------------------------------------------------------


def single_pixel(size: int = 21) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[0, 0, size // 2, size // 2] = 1
    return mask


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
def test_dilate_disc_grows_a_pixel_into_the_euclidean_disc(radius):
    out = K.dilate(single_pixel(), radius)
    offsets = torch.arange(21) - 10
    expected = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).float()
    assert torch.equal(out[0, 0], expected)


def test_dilate_square_and_bool_and_image_border():
    out = K.dilate(single_pixel(), 2, shape="square")
    assert out.sum() == 25 and torch.all(out[0, 0, 8:13, 8:13] == 1)
    corner = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    corner[0, 0, 0, 0] = True
    grown = K.dilate(corner, 2)
    assert grown.dtype == torch.bool and grown.sum() == 6  # quarter disc: (0,0..2), (1,0..1), (2,0)
    assert torch.equal(K.dilate(corner, 0), corner)


def brute_force_dilate(masks: torch.Tensor, radius: int, disc: bool) -> torch.Tensor:
    """The definition: the max over every offset of the footprint, outside the image empty."""
    x = masks.float()
    height, width = x.shape[-2:]
    padded = F.pad(x, (radius,) * 4, value=float("-inf"))
    out = torch.full_like(x, float("-inf"))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if not disc or dy * dy + dx * dx <= radius * radius:
                out = torch.maximum(out, padded[..., radius + dy : radius + dy + height, radius + dx : radius + dx + width])
    return out


@pytest.mark.parametrize("radius", [1, 4, 8, 11])
@pytest.mark.parametrize("shape", ["disc", "square"])
def test_dilate_equals_the_brute_force_max_on_soft_and_binary_masks(radius, shape):
    generator = torch.Generator().manual_seed(radius)
    soft = torch.rand(2, 1, 37, 45, generator=generator) ** 8  # mostly near 0, a few bright peaks
    binary = torch.rand(2, 1, 37, 45, generator=generator) > 0.995
    for masks in (soft, binary):
        got = K.dilate(masks, radius, shape=shape)
        assert got.dtype == masks.dtype
        assert torch.equal(got.float(), brute_force_dilate(masks, radius, shape == "disc"))


def test_gaussian_blur_equals_the_separable_convolution():
    x = torch.rand(3, 1, 30, 41, generator=torch.Generator().manual_seed(0))
    radius = 5
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1.0) / (radius / 2)) ** 2)
    taps = taps / taps.sum()
    padded = F.pad(x, (radius,) * 4, mode="replicate")
    want = F.conv2d(F.conv2d(padded, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))
    torch.testing.assert_close(K.gaussian_blur(x, radius), want, atol=1e-6, rtol=0)


def test_feather_is_one_on_the_mask_zero_beyond_twice_the_radius_and_monotone():
    radius = 4
    mask = torch.zeros(2, 1, 40, 40)
    mask[:, :, 15:25, 15:25] = 1
    alpha = K.feather(mask, radius)
    assert alpha.dtype == torch.float32 and alpha.min() >= 0 and alpha.max() <= 1
    assert torch.all(alpha[mask.bool()] > 1 - 1e-6)
    far = K.dilate(mask, 2 * radius, shape="square") == 0
    assert torch.all(alpha[far] == 0)
    row = alpha[0, 0, 20, 24:40]  # from the mask edge outwards
    assert torch.all(row[1:] <= row[:-1]) and row[0] > 1 - 1e-6 and row[-1] == 0
    assert 0 < alpha[0, 0, 20, 25 + radius] < 1  # a real soft ramp


def test_feather_keeps_masks_that_touch_the_image_border_solid():
    mask = torch.zeros(1, 1, 20, 20)
    mask[0, 0, :, :5] = 1
    alpha = K.feather(mask, 3)
    assert torch.all(alpha[0, 0, :, :5] > 1 - 1e-6)  # rows 0 and 19 included: no dark rim


# --- blending and pasting --------------------------------------------------------------------------


def test_alpha_blend_broadcasts():
    fg, bg = torch.full((2, 3, 4, 4), 1.0), torch.full((2, 3, 4, 4), -1.0)
    alpha = torch.tensor([0.0, 0.25]).view(2, 1, 1, 1)
    out = K.alpha_blend(fg, bg, alpha)
    assert torch.all(out[0] == -1) and torch.allclose(out[1], torch.full((3, 4, 4), -0.5))


def test_paste_back_of_identity_crop_reproduces_the_region_in_place():
    image = torch.rand(1, 3, 16, 20)
    box = torch.tensor([[4.0, 3.0, 12.0, 13.0]])
    patch = K.crop_resize(image, box, torch.tensor([0]), (10, 8))
    canvas = torch.zeros(3, 16, 20)
    out = K.paste_back(canvas, patch, box, torch.ones(1, 1, 10, 8))
    assert out is canvas
    assert torch.allclose(canvas[:, 3:13, 4:12], image[0, :, 3:13, 4:12], atol=1e-6)
    canvas[:, 3:13, 4:12] = 0
    assert torch.all(canvas == 0)


def test_paste_back_resamples_a_downscaled_gradient_back_to_the_gradient():
    image = gradient_image(batch=1, height=32, width=32)
    box = torch.tensor([[4.0, 6.0, 24.0, 26.0]])
    patch = K.crop_resize(image, box, torch.tensor([0]), (10, 10))  # 2x down
    canvas = K.paste_back(torch.zeros(2, 32, 32), patch, box)
    # bilinear reproduces a linear function away from the edge-clamped outer canvas pixel
    assert torch.allclose(canvas[:, 7:25, 5:23], image[0, :, 7:25, 5:23], atol=1e-4)


def test_paste_back_footprint_is_pixel_centres_in_the_box_and_clipped_to_the_canvas():
    canvas = torch.zeros(1, 12, 12)
    boxes = torch.tensor([[2.3, 3.6, 7.5, 9.5], [-5.0, -5.0, 2.0, 2.0], [11.2, 11.2, 11.4, 11.4]])
    K.paste_back(canvas, torch.ones(3, 1, 4, 4), boxes, torch.ones(3, 1, 4, 4))
    expected = torch.zeros(12, 12)
    expected[4:9, 2:7] = 1  # centres x 2.5..6.5 in [2.3, 7.5), y 4.5..8.5 in [3.6, 9.5)
    expected[0:2, 0:2] = 1  # the part of box 1 inside the canvas; box 2 holds no pixel centre
    assert torch.equal(canvas[0], expected)


def test_paste_back_alpha_and_batched_canvas():
    canvas = torch.zeros(2, 1, 6, 6)
    patches = torch.stack([torch.full((1, 3, 3), 4.0), torch.full((1, 3, 3), 8.0)])
    alphas = torch.full((2, 1, 3, 3), 0.25)
    boxes = torch.tensor([[0.0, 0.0, 6.0, 6.0], [3.0, 3.0, 6.0, 6.0]])
    K.paste_back(canvas, patches, boxes, alphas, image_index=torch.tensor([1, 1]))
    assert torch.all(canvas[0] == 0)
    assert torch.all(canvas[1, 0, :3] == 1) and torch.all(canvas[1, 0, 3:, 3:] == 1 + 0.25 * (8 - 1))


# --- coverage merge --------------------------------------------------------------------------------


def test_coverage_order_is_ascending_and_stable():
    masks = torch.zeros(4, 1, 4, 4)
    for n, area in enumerate([5, 3, 5, 1]):
        masks[n].view(-1)[:area] = 1
    assert K.coverage_order(masks).tolist() == [3, 1, 0, 2]
    assert K.coverage(masks).tolist() == [5.0, 3.0, 5.0, 1.0]


@pytest.mark.parametrize("input_order", [[0, 1], [1, 0]])
def test_coverage_merge_pastes_the_larger_person_last(input_order):
    # person 0 is large (red), person 1 is small (green) and overlaps it
    masks = torch.zeros(2, 1, 40, 40)
    masks[0, 0, 5:35, 5:25] = 1
    masks[1, 0, 15:25, 20:30] = 1
    boxes = torch.tensor([[5.0, 5.0, 25.0, 35.0], [20.0, 15.0, 30.0, 25.0]])
    colours = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0]])
    patches = colours[:, :, None, None].expand(2, 3, 8, 8)
    alphas = torch.ones(2, 1, 8, 8)
    order = torch.tensor(input_order)
    canvas = torch.zeros(3, 40, 40)
    K.coverage_merge(canvas, patches[order], boxes[order], alphas[order], K.coverage(masks)[order])
    assert torch.equal(canvas[:, 20, 22], colours[0])  # overlap: the larger person wins
    assert torch.equal(canvas[:, 20, 28], colours[1])  # the small one's own part survives
    assert torch.equal(canvas[:, 2, 2], torch.zeros(3))


def test_coverage_of_no_masks_is_empty():
    from refsd_trt.kernels import coverage

    assert coverage(torch.zeros((0, 1, 8, 8))).shape == (0,)
