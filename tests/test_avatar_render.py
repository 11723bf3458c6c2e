"""Rasterizer and renderer against analytic cases; torch vs nvdiffrast agreement on a GPU."""

from __future__ import annotations

import pytest
import torch

from refsd_trt.avatar import Camera, Meshes, TorchRasterizer, render

SIZE = (256, 320)  # H, W: not square, to catch swapped axes
FOCAL = 200.0


def camera(count: int = 1) -> Camera:
    return Camera(
        focal=torch.full((count, 2), FOCAL),
        principal=torch.tensor([[SIZE[1] / 2, SIZE[0] / 2]]).expand(count, 2),
        translation=torch.zeros((count, 3)),
    )


def test_triangle_coverage_matches_its_analytic_area():
    corners = torch.tensor([[[-0.6, -0.5, 2.0], [0.7, -0.3, 2.0], [0.1, 0.55, 2.0]]])
    fragments = TorchRasterizer()(corners, torch.tensor([[0, 1, 2]]), camera(), SIZE)
    pixels = camera().project(corners)[0]
    (ax, ay), (bx, by), (cx, cy) = pixels.tolist()
    area = abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax)) / 2
    covered = int((fragments.face >= 0).sum())
    assert area > 5_000
    assert abs(covered - area) / area < 0.01, (covered, area)


def test_slanted_triangle_depth_is_the_ray_plane_intersection():
    # The plane z = 2 + 0.5 x; the ray through pixel centre (u, v) meets it at z = 2 / (1 - 0.5 dx).
    corners = torch.tensor([[[-0.8, -0.6, 1.6], [0.8, -0.6, 2.4], [0.0, 0.7, 2.0]]])
    fragments = TorchRasterizer()(corners, torch.tensor([[0, 2, 1]]), camera(), SIZE)
    rows, cols = torch.nonzero(fragments.face[0] >= 0, as_tuple=True)
    dx = (cols + 0.5 - SIZE[1] / 2) / FOCAL
    expected = 2.0 / (1 - 0.5 * dx)
    measured = fragments.depth[0, rows, cols]
    assert len(rows) > 3_000
    assert torch.allclose(measured, expected, rtol=1e-4), (measured - expected).abs().max()
    assert torch.all(fragments.depth[0][fragments.face[0] < 0] == 0)
    # Perspective-correct barycentrics reproduce the 3D point on the triangle.
    point = (fragments.bary[0, rows, cols, :, None] * corners[0][[0, 2, 1]]).sum(-2)
    assert torch.allclose(point[:, 2], expected, rtol=1e-4)


def cube(centre: tuple[float, float, float], side: float) -> tuple[torch.Tensor, torch.Tensor]:
    corners = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    vertices = corners * side + torch.tensor(centre)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = torch.tensor([tri for a, b, c, d in quads for tri in ((a, b, c), (a, c, d))])
    return vertices[None], faces


def test_cube_silhouette_and_front_face_depth():
    # Seen along its axis, a cube's silhouette is its front face: a square of side f * side / z_front.
    vertices, faces = cube((0.0, 0.0, 3.0), 1.0)
    output = render(Meshes(vertices, faces, torch.full_like(vertices, 0.5)), camera(), SIZE)
    side_px = FOCAL * 1.0 / 2.5
    covered = output.alpha[0, 0] > 0
    assert abs(int(covered.sum()) - side_px**2) / side_px**2 < 0.01
    rows, cols = torch.nonzero(covered, as_tuple=True)
    assert (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1) == (round(side_px), round(side_px))
    assert torch.allclose(output.depth[0, 0][covered], torch.tensor(2.5), atol=1e-5)
    # Lambert under a light from above-front: the face towards the camera is lit, colour stays in range.
    assert output.rgb.shape == (1, 3, *SIZE)
    assert 0.2 < float(output.rgb[0, :, covered].mean()) <= 0.5


def test_supersampling_gives_fractional_edge_coverage():
    # A 72 px square (f * 0.9 / 2.5) shifted half a pixel sideways: its left and right edges fall mid-pixel.
    vertices, faces = cube((0.5 * 2.5 / FOCAL, 0.0, 3.0), 0.9)
    vertices[..., 2] = vertices[..., 2] - 0.05  # front face at z = 2.5
    hard = render(Meshes(vertices, faces, torch.full_like(vertices, 0.5)), camera(), SIZE)
    soft = render(Meshes(vertices, faces, torch.full_like(vertices, 0.5)), camera(), SIZE, supersample=4)
    side_px = FOCAL * 0.9 / 2.5
    assert abs(float(soft.alpha.sum()) - side_px**2) / side_px**2 < 0.002
    edge = (soft.alpha > 0) & (soft.alpha < 1)
    assert torch.allclose(soft.alpha[edge], torch.tensor(0.5)) and int(edge.sum()) == 2 * 72
    # Edge pixels keep the surface colour (not darkened by the background): rgb is not premultiplied.
    lit = hard.rgb[:, :, hard.alpha[0, 0] > 0]
    assert lit.min() - 0.01 <= soft.rgb[:, :, edge[0, 0]].min() and soft.rgb[:, :, edge[0, 0]].max() <= lit.max() + 0.01
    assert torch.allclose(soft.depth[soft.alpha > 0], torch.tensor(2.5), atol=1e-4)


def test_batched_render_equals_per_mesh_renders():
    near, faces = cube((-0.3, 0.0, 3.0), 0.8)
    far, _ = cube((0.4, 0.2, 5.0), 1.2)
    vertices = torch.cat([near, far])
    colours = torch.rand_like(vertices)
    batched = render(Meshes(vertices, faces, colours), camera(2), SIZE)
    for index in range(2):
        single = render(Meshes(vertices[index:index + 1], faces, colours[index:index + 1]), camera(), SIZE)
        assert torch.equal(batched.alpha[index], single.alpha[0])
        assert torch.allclose(batched.depth[index], single.depth[0])


@pytest.mark.gpu
def test_nvdiffrast_agrees_with_the_torch_rasterizer():
    from refsd_trt.avatar import anny_body, fit_boxes
    from refsd_trt.avatar.nvdiffrast_rasterizer import NvdiffrastRasterizer, nvdiffrast_available

    if not nvdiffrast_available():
        pytest.skip("nvdiffrast is not installed (it is optional: NVIDIA's non-commercial licence)")
    body = anny_body(device="cuda")
    boxes = torch.tensor([[40.0, 20.0, 200.0, 240.0]], device="cuda")
    fit = fit_boxes(body, boxes, SIZE, body.sample_shape({}, 0)[None])
    output = body(fit.params)
    meshes = Meshes(output.vertices, output.faces, torch.full_like(output.vertices, 0.6))
    ours = render(meshes, fit.camera, SIZE).alpha > 0
    theirs = render(meshes, fit.camera, SIZE, rasterizer=NvdiffrastRasterizer()).alpha > 0
    iou = float((ours & theirs).sum() / (ours | theirs).sum())
    assert iou >= 0.98, iou


def test_clothing_follows_the_prompt_and_other_draws_stay_put():
    from refsd_trt.attributes import CHOICES, person_prompt
    from refsd_trt.avatar.body_model import BodyRegion
    from refsd_trt.avatar.clothing import MANNEQUIN, NAMED_COLOURS, clothing_palette

    assert set(CHOICES["top_color"]) | set(CHOICES["bottom_color"]) <= set(NAMED_COLOURS)
    prompt = person_prompt(0, "image", 0, {"top_color": "red", "top": "coat", "bottom_color": "blue"})
    palette = clothing_palette(prompt.attributes, prompt.seed)
    colour = lambda region: tuple(round(v, 4) for v in palette[region].tolist())
    assert colour(BodyRegion.TOP) == colour(BodyRegion.FOREARMS) == NAMED_COLOURS["red"]  # a coat's long sleeves
    assert colour(BodyRegion.BOTTOM) == NAMED_COLOURS["blue"]
    bare = clothing_palette({"top_color": "red", "top": "t-shirt"}, prompt.seed)
    assert tuple(round(v, 4) for v in bare[BodyRegion.FOREARMS].tolist()) == MANNEQUIN
    # Naming a colour replaces that colour only: the shoes (and any unnamed colour) keep their draw.
    free = clothing_palette({}, prompt.seed)
    assert torch.equal(free[BodyRegion.FEET], palette[BodyRegion.FEET])
    assert torch.equal(clothing_palette({"top_color": "navy-ish"}, prompt.seed), free)  # unknown words: drawn
