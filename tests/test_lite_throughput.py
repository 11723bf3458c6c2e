"""The lite speed-ups compute what they replaced (issue 17), and the throughput benchmark reports figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch

from refsd_trt.avatar.anny_body import ANNY_JOINTS
from refsd_trt.avatar.pose_prior import LIMIT_WEIGHT, pose_prior
from refsd_trt.avatar.records import AvatarParams
from refsd_trt.avatar.rotations import rotvec_to_rotmat
from refsd_trt.threads import one_thread


@pytest.fixture(scope="module")
def body():
    pytest.importorskip("anny", reason="the avatar body model is the anny package")
    from refsd_trt.avatar.anny_body import anny_body

    return anny_body()


def test_the_posed_chain_keypoints_match_annys_full_skeleton(body):
    """Folding the 92 unposed bones into their posed ancestors changes nothing but the cost."""
    gen = torch.Generator().manual_seed(0)
    shape = torch.stack([body.sample_shape({"age": "adult"}, seed) for seed in range(5)])
    pose = torch.randn(5, len(body.joints), 3, generator=gen) * 0.7
    orient = torch.randn(5, 3, generator=gen)
    params = AvatarParams(orient, pose, shape)
    reference = body(params).keypoints  # Anny's own 104-bone forward kinematics and skinning
    folded = body.keypoint_model(shape)(params)
    assert reference.abs().max() > 0.5  # metres: real bodies, not zeros
    assert (folded - reference).abs().max() < 1e-5
    # And at rest (every delta the identity) too.
    rest = AvatarParams(torch.zeros(5, 3), torch.zeros(5, len(body.joints), 3), shape)
    assert (body.keypoint_model(shape)(rest) - body(rest).keypoints).abs().max() < 1e-5


def test_rotvec_to_rotmat_matches_roma_in_value_and_gradient_through_zero():
    gen = torch.Generator().manual_seed(1)
    rotvec = torch.randn(200, 3, generator=gen) * torch.rand(200, 1, generator=gen) * math.pi
    rotvec[0] = 0.0
    rotvec[1] = 1e-9
    assert (rotvec_to_rotmat(rotvec) - roma.rotvec_to_rotmat(rotvec)).abs().max() < 2e-6
    weights = torch.randn(2, 3, 3, generator=gen)
    for start in (torch.zeros(2, 3), torch.tensor([[0.3, -1.2, 2.0], [0.0, 0.0, 0.5]])):
        ours, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
        (rotvec_to_rotmat(ours) * weights).sum().backward()
        (roma.rotvec_to_rotmat(theirs) * weights).sum().backward()
        assert ours.grad.abs().max() > 0.1
        assert (ours.grad - theirs.grad).abs().max() < 1e-5


def test_the_pose_prior_penalises_a_knee_off_its_hinge_and_bent_backwards():
    knee = next(i for i, j in enumerate(ANNY_JOINTS) if j.hinge_axis is not None)
    directions = torch.nn.functional.normalize(torch.ones(len(ANNY_JOINTS), 3), dim=-1)
    assert ANNY_JOINTS[knee].twist_weight == 0  # the energies below are the hinge terms alone
    rest = pose_prior(torch.zeros(1, len(ANNY_JOINTS), 3), ANNY_JOINTS, directions, 0.0)
    assert rest.item() == 0.0
    forward, sideways, backward = (torch.zeros(1, len(ANNY_JOINTS), 3) for _ in range(3))
    axis = ANNY_JOINTS[knee].hinge_axis
    forward[0, knee, axis] = 0.3
    sideways[0, knee, (axis + 1) % 3] = 0.3
    backward[0, knee, axis] = -0.3
    energy = lambda p: pose_prior(p, ANNY_JOINTS, directions, 0.0).item()
    assert energy(forward) == pytest.approx(0.0, abs=1e-7)
    assert energy(sideways) == pytest.approx(LIMIT_WEIGHT * 0.09, rel=1e-5)
    assert energy(backward) == pytest.approx(LIMIT_WEIGHT * 0.09, rel=1e-5)


def test_one_thread_runs_the_block_on_one_thread_and_restores_the_count():
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), one_thread():
        raise RuntimeError("a stage failed")
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_measure_quick_reports_finite_positive_figures():
    pytest.importorskip("deface", reason="the peer tool is the eval extra's deface")
    from refsd_trt.bench.lite_throughput import measure

    figures = measure(quick=True)
    for side in ("lite", "lite_batched"):
        for key in ("images_per_s", "cpu_s_per_image", "wall_s_per_image"):
            assert math.isfinite(figures[f"{side}_{key}"]) and figures[f"{side}_{key}"] > 0, (side, key)
        stages = figures[f"{side}_stages_s_per_image"]
        assert {"detect", "remove", "render", "merge", "verify"} <= set(stages)
        assert all(seconds > 0 for seconds in stages.values())
    assert math.isfinite(figures["lite_vs_deface"]) and figures["lite_vs_deface"] > 0
    assert "deface blurs faces only" in figures["table"]
    quick = figures["workloads"]["quick"]
    assert quick["sizes"] == ["256x256"] and quick["deface"]["images_per_s"] > 0


def test_a_batched_side_is_timed_on_the_clis_batches_with_its_stages_summed():
    """The batched lite side gets the 5 sample photos as the CLI would: a batch of 4, then 1."""
    from refsd_trt.bench.lite_throughput import Side, _timed

    batches = []

    def call(images):
        batches.append(len(images))
        return {"render": 0.5 * len(images), "detect": 0.25}

    timed = _timed(Side(call, batch_size=4), [np.zeros((2, 2, 3), np.uint8)] * 5)
    assert batches == [4, 1]
    assert timed["stages_s"] == {"render": 0.5, "detect": 0.1}  # per image: 2.5 / 5 and 2 × 0.25 / 5
    assert timed["wall_s"] >= 0 and timed["cpu_s"] >= 0
