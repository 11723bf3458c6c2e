"""Body models, attribute sampling and pose fitting, on Anny (SMPL: its missing-file error only)."""

from __future__ import annotations

import time

import pytest
import torch

from refsd_trt.avatar import (
    COCO_KEYPOINTS,
    AvatarParams,
    Camera,
    FitSettings,
    Meshes,
    SmplBody,
    SmplModelFilesMissing,
    anny_body,
    default_intrinsics,
    fit_boxes,
    fit_keypoints,
    render,
    render_avatars,
    rest_params,
)
from refsd_trt.types import PersonDetections

SIZE = (512, 512)


@pytest.fixture(scope="module")
def body():
    return anny_body()


def silhouette(body, params: AvatarParams, camera: Camera) -> torch.Tensor:
    output = body(params)
    meshes = Meshes(output.vertices, output.faces, torch.full_like(output.vertices, 0.5))
    return render(meshes, camera, SIZE).alpha[:, 0] > 0


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_anny_body_interface(body):
    params = rest_params(body, body.sample_shape({}, 0).expand(3, -1))
    output = body(params)
    assert output.vertices.shape == (3, 1229, 3) and output.keypoints.shape == (3, 17, 3)
    assert output.faces.shape[1] == 3 and int(output.faces.max()) == 1228
    # Body frame: upright (y down, so the nose is above the ankles), facing the camera (the
    # person's left on +x), origin at the pelvis.
    keypoints = output.keypoints[0]
    nose, ankle = keypoints[COCO_KEYPOINTS.index("nose")], keypoints[COCO_KEYPOINTS.index("left_ankle")]
    assert nose[1] < -0.5 and ankle[1] > 0.6
    assert keypoints[COCO_KEYPOINTS.index("left_shoulder"), 0] > keypoints[COCO_KEYPOINTS.index("right_shoulder"), 0]
    assert nose[2] < 0  # the face is towards the camera (-z)
    fast = body.keypoint_model(params.shape)(params)
    assert torch.allclose(fast, output.keypoints, atol=1e-5)


def test_shape_is_sampled_from_attributes_and_seed(body):
    adult = body.sample_shape({"age": "adult", "gender": "female"}, seed=3)
    assert torch.equal(adult, body.sample_shape({"age": "adult", "gender": "female"}, seed=3))
    assert not torch.equal(adult, body.sample_shape({"age": "adult", "gender": "female"}, seed=4))
    child = body.sample_shape({"age": "child"}, seed=3)
    heights = [body(rest_params(body, s[None])).vertices[0, :, 1].aminmax() for s in (adult, child)]
    adult_height, child_height = (float(high - low) for low, high in heights)
    assert 1.45 < adult_height < 1.85 and child_height < 0.8 * adult_height


def test_fit_recovers_a_known_pose_from_noisy_keypoints_with_two_missing(body):
    joints = [j.name for j in body.joints]
    pose = torch.zeros(1, len(joints), 3)
    for name, rotation in {
        "upperarm01.L": (0.0, -0.9, 0.0), "lowerarm01.L": (0.0, -1.2, 0.0),  # left arm raised, elbow bent
        "upperarm01.R": (-0.8, 0.4, 0.0), "lowerarm01.R": (-1.3, 0.0, 0.0),  # right arm forward
        "upperleg01.L": (-0.9, 0.0, 0.1), "lowerleg01.L": (1.2, 0.0, 0.0),  # left knee raised
        "upperleg01.R": (0.2, 0.0, -0.25), "spine02": (0.15, 0.0, 0.1), "neck01": (0.0, 0.0, 0.3),
    }.items():
        pose[0, joints.index(name)] = torch.tensor(rotation)
    # Limbs rotate about axes across the bone (elbows and knees do not twist), like the pose prior.
    limbs = torch.tensor([j.twist_weight > 0 for j in body.joints], dtype=torch.float32)[:, None]
    pose = pose - limbs * (pose * body.bone_directions).sum(-1, keepdim=True) * body.bone_directions
    shape = body.sample_shape({"gender": "female"}, seed=0)[None]
    source = AvatarParams(torch.tensor([[0.1, 0.5, 0.05]]), pose, shape)
    focal, principal = default_intrinsics(SIZE, 1)
    source_camera = Camera(focal, principal, torch.tensor([[0.05, 0.1, 2.6]]))
    truth = source_camera.project(body(source).keypoints)

    noisy = truth + 2.0 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    confidence = torch.full((1, 17, 1), 0.9)
    missing = [COCO_KEYPOINTS.index("left_ear"), COCO_KEYPOINTS.index("right_elbow")]
    confidence[0, missing] = 0.0
    pixels = source_camera.project(body(source).vertices)
    box = torch.cat([pixels.amin(1), pixels.amax(1)], dim=1)

    start = time.perf_counter()
    fit = fit_keypoints(body, torch.cat([noisy, confidence], -1), box, SIZE, shape)
    seconds = time.perf_counter() - start
    assert torch.equal(fit.params.shape, shape)  # the shape is never fitted
    fitted = fit.camera.project(body(fit.params).keypoints)
    errors = (fitted - truth).norm(dim=-1)[0]
    visible = confidence[0, :, 0] > 0
    overlap = iou(silhouette(body, source, source_camera), silhouette(body, fit.params, fit.camera))
    print(f"fit {seconds:.1f} s; px error vs truth: visible {errors[visible].mean():.2f}, "
          f"all {errors.mean():.2f}, vs noisy input {float(fit.reprojection_px[0]):.2f}; IoU {overlap:.3f}")
    assert float(errors[visible].mean()) <= 3.0
    assert float(fit.reprojection_px[0]) <= 3.0
    assert overlap >= 0.85


def test_box_fit_stands_in_the_box(body):
    boxes = torch.tensor([[100.0, 40.0, 220.0, 480.0], [300.0, 200.0, 500.0, 512.0]])  # second cut off
    shapes = torch.stack([body.sample_shape({}, 1), body.sample_shape({}, 2)])
    fit = fit_boxes(body, boxes, SIZE, shapes)
    pixels = fit.camera.project(body(fit.params).vertices)
    low, high = pixels.amin(1), pixels.amax(1)
    assert torch.allclose(low[0, 1], boxes[0, 1], atol=1.0) and torch.allclose(high[0, 1], boxes[0, 3], atol=1.0)
    assert abs(float(low[0, 0] + high[0, 0]) / 2 - 160.0) < 1.0
    assert abs(float(low[1, 1]) - 200.0) < 1.0 and float(high[1, 1]) > 512  # hangs from the top, cut below
    assert float(high[1, 0] - low[1, 0]) <= 200.5


def test_render_avatars_mixes_keypoint_and_box_people(body):
    standing = fit_boxes(body, torch.tensor([[200.0, 60.0, 300.0, 460.0]]), SIZE, body.sample_shape({}, 5)[None])
    keypoints = torch.cat([standing.camera.project(body(standing.params).keypoints), torch.ones(1, 17, 1)], -1)
    detections = PersonDetections(
        boxes=torch.tensor([[200.0, 60.0, 300.0, 460.0], [20.0, 100.0, 120.0, 400.0]]),
        scores=torch.ones(2), masks=torch.zeros((2, *SIZE), dtype=torch.bool),
        keypoints=torch.cat([keypoints, torch.zeros(1, 17, 3)]),  # the second person has none
    )
    quick = FitSettings(camera_steps=20, pose_steps=100)  # a short fit: accuracy is the other test's job
    renders = render_avatars(detections, SIZE, [{"gender": "male"}, {"age": "child"}], [0, 1], body, crop_size=128,
                             settings=quick)
    assert renders.render.rgb.shape == (2, 3, 128, 128) and renders.render.alpha.shape == (2, 1, 128, 128)
    coverage = renders.render.alpha.mean(dim=(1, 2, 3))
    assert torch.all(coverage > 0.05)
    assert torch.isfinite(renders.fit.reprojection_px[0]) and float(renders.fit.reprojection_px[0]) < 4.0
    assert torch.isnan(renders.fit.reprojection_px[1])  # no keypoints: standing pose
    assert torch.all(renders.render.depth[renders.render.alpha > 0] > 0)


def test_smpl_without_model_files_names_the_files_expected(tmp_path):
    with pytest.raises(SmplModelFilesMissing) as error:
        SmplBody(tmp_path, model_type="smpl")
    message = str(error.value)
    assert str(tmp_path / "smpl" / "SMPL_NEUTRAL.pkl") in message and "smpl.is.tue.mpg.de" in message
    with pytest.raises(SmplModelFilesMissing, match="SMPLX_FEMALE.npz"):
        SmplBody(tmp_path, model_type="smplx", gender="female")


def fake_smpl_file(folder) -> None:
    """A structurally valid SMPL file (real vertex count and kinematic tree, random geometry): enough to
    run the SMPL adapter without the licensed model, not to judge poses."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    parents = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
    joints = rng.normal(scale=0.3, size=(24, 3)).astype(np.float32)
    owner = rng.integers(0, 24, size=6890)
    vertices = joints[owner] + rng.normal(scale=0.02, size=(6890, 3)).astype(np.float32)
    regressor = np.zeros((24, 6890), np.float32)
    regressor[owner, np.arange(6890)] = 1.0
    regressor /= regressor.sum(1, keepdims=True)
    data = {
        "v_template": vertices, "f": rng.integers(0, 6890, size=(13776, 3)).astype(np.int64),
        "J_regressor": regressor, "weights": np.eye(24, dtype=np.float32)[owner],
        "kintree_table": np.array([[2**32 - 1] + parents[1:], list(range(24))], dtype=np.int64),
        "shapedirs": rng.normal(scale=0.01, size=(6890, 3, 10)).astype(np.float32),
        "posedirs": np.zeros((6890, 3, 207), np.float32),
    }
    (folder / "smpl").mkdir()
    with open(folder / "smpl" / "SMPL_NEUTRAL.pkl", "wb") as file:
        pickle.dump(data, file)


def test_smpl_adapter_runs_the_body_model_interface(tmp_path):
    fake_smpl_file(tmp_path)
    body = SmplBody(tmp_path)
    shape = torch.stack([body.sample_shape({}, 0), body.sample_shape({}, 1)])
    assert torch.equal(shape[0], body.sample_shape({}, 0)) and shape.shape == (2, 10)
    params = rest_params(body, shape)
    params.body_pose = body.standing_pose(2)
    output = body(params)
    assert output.vertices.shape == (2, 6890, 3) and output.keypoints.shape == (2, 17, 3)
    assert torch.allclose(body.keypoint_model(shape)(params), output.keypoints, atol=1e-5)
    assert body.vertex_regions.shape == (6890,) and body.bone_directions.shape == (len(body.joints), 3)
    fit = fit_boxes(body, torch.tensor([[50.0, 50.0, 200.0, 450.0], [250.0, 60.0, 400.0, 500.0]]), SIZE, shape)
    pixels = fit.camera.project(body(fit.params).vertices)
    assert torch.allclose(pixels[:, :, 1].amin(1), torch.tensor([50.0, 60.0]), atol=1.0)


def _posed_person(body, seed: int, image_size: tuple[int, int], orient: list[float], translation: list[float]):
    """(keypoints (1, 17, 3), box (1, 4), shape (1, S)) of a randomly posed body seen in an image of
    ``image_size``: noisy keypoints, the box clipped to the image and what falls outside it unseen."""
    gen = torch.Generator().manual_seed(seed)
    shape = body.sample_shape({}, seed)[None]
    pose = body.standing_pose(1) + 0.2 * torch.randn(1, len(body.joints), 3, generator=gen)
    params = AvatarParams(torch.tensor([orient]), pose, shape)
    camera = Camera(*default_intrinsics(image_size, 1), torch.tensor([translation]))
    output = body(params)
    keypoints = camera.project(output.keypoints) + 2.0 * torch.randn(1, 17, 2, generator=gen)
    pixels = camera.project(output.vertices)
    far = torch.tensor([image_size[1], image_size[0]]) - 0.5
    box = torch.cat([pixels.amin(1).clamp_min(0), torch.minimum(pixels.amax(1), far)], dim=1)
    seen = (keypoints < far).all(-1, keepdim=True).float() * 0.9
    return torch.cat([keypoints, seen], -1), box, shape


def test_people_of_two_images_fit_together_as_each_image_alone(body):
    """One optimisation for all people of a batch of images (the lite speed-up, issue 17) gives each
    person the fit their own image alone gives, sizes and cut-off test per person included."""
    from refsd_trt.avatar import fit_avatars

    wide, tall = (480, 640), (720, 400)
    people = {
        wide: [_posed_person(body, 1, wide, [0.1, 0.4, 0.0], [-0.4, 0.0, 4.0]),
               _posed_person(body, 2, wide, [0.0, -0.3, 0.0], [0.5, 0.6, 2.0])],  # cut off by the bottom edge
        tall: [_posed_person(body, 3, tall, [0.0, 2.8, 0.1], [0.0, 0.1, 3.0])],  # seen from behind
    }
    assert float(people[wide][1][1][0, 3]) == wide[0] - 0.5 and int((people[wide][1][0][..., 2] == 0).sum()) >= 2
    stacked = lambda rows: [torch.cat(column) for column in zip(*rows)]
    alone = [fit_avatars(body, boxes, size, shapes, keypoints)
             for size, (keypoints, boxes, shapes) in ((s, stacked(p)) for s, p in people.items())]
    keypoints, boxes, shapes = stacked(people[wide] + people[tall])
    together = fit_avatars(body, boxes, torch.tensor([wide, wide, tall]), shapes, keypoints)

    placed = lambda fit: fit.camera.project(body(fit.params).vertices)
    apart = torch.cat([placed(fit) for fit in alone])
    shift = (placed(together) - apart).norm(dim=-1)
    error = torch.cat([fit.reprojection_px for fit in alone])
    print(f"together vs alone: vertices up to {float(shift.max()):.3f} px apart, keypoint errors "
          f"{error.tolist()} vs {together.reprojection_px.tolist()}")
    assert torch.equal(together.camera.focal, torch.tensor([[640.0] * 2, [640.0] * 2, [720.0] * 2]))
    assert torch.equal(together.camera.principal, torch.tensor([[320.0, 240.0], [320.0, 240.0], [200.0, 360.0]]))
    # Not bit for bit (a batch of another size sums in another order, and 300 Adam steps carry the
    # last bits on): measured 0.1 px at most here, and 0.002 px of keypoint error.
    assert float(shift.max()) < 1.0
    assert torch.allclose(together.reprojection_px, error, atol=0.02)
    assert float(together.reprojection_px.max()) < 4.0


def test_box_fit_reads_each_persons_own_image_height(body):
    """The same box reaches the bottom of a 480 px tall image (cut off: hangs from its top) and not of
    a 960 px one (stands in it), in one call."""
    box = torch.tensor([[100.0, 200.0, 300.0, 479.5]])
    shape = body.sample_shape({}, 4)[None]
    fit = fit_boxes(body, box.expand(2, 4), [(480, 640), (960, 640)], shape.expand(2, -1))
    pixels = fit.camera.project(body(fit.params).vertices)
    low, high = pixels[..., 1].amin(1), pixels[..., 1].amax(1)
    assert abs(float(low[0]) - 200.0) < 1.0 and float(high[0]) > 480.0
    assert abs(float(low[1]) - 200.0) < 1.0 and abs(float(high[1]) - 479.5) < 1.0
    focal, principal = default_intrinsics([(480, 640), (960, 640)], 2)
    assert torch.equal(focal, torch.tensor([[640.0, 640.0], [960.0, 960.0]]))
    assert torch.equal(principal, torch.tensor([[320.0, 240.0], [320.0, 480.0]]))


def test_a_broken_persons_fit_spoils_no_other_image_fitted_with_it(body):
    """A keypoint that is not a number makes its person's fit not finite (lite then fills that person,
    ``test_anonymize``'s render-nan case), and leaves every other person's fit as it was."""
    from refsd_trt.avatar import fit_avatars

    wide, tall = (480, 640), (720, 400)
    keypoints, boxes, shapes = (torch.cat(column) for column in zip(
        _posed_person(body, 1, wide, [0.1, 0.4, 0.0], [-0.4, 0.0, 4.0]),
        _posed_person(body, 3, tall, [0.0, 2.8, 0.1], [0.0, 0.1, 3.0])))
    sizes, quick = torch.tensor([wide, tall]), FitSettings(camera_steps=20, pose_steps=60)
    sound = fit_avatars(body, boxes, sizes, shapes, keypoints, quick)
    keypoints[0, COCO_KEYPOINTS.index("left_shoulder"), 0] = float("nan")
    broken = fit_avatars(body, boxes, sizes, shapes, keypoints, quick)
    assert not torch.isfinite(broken.camera.project(body(broken.params).vertices)[0]).all()
    assert torch.equal(broken.params.body_pose[1], sound.params.body_pose[1])
    assert torch.equal(broken.camera.translation[1], sound.camera.translation[1])
