"""The benchmark harness's own parts: scenes, crops, instrumentation, FLOP model, statistics,
analysis, targets and report. Nothing here times anything: targets are checked by the benchmark."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from refsd_trt.bench import analysis, targets
from refsd_trt.bench.crops import paste, square_crop
from refsd_trt.bench.flops import FlopModel, Throughput, count_flops, peak_flops
from refsd_trt.bench.harness import Repeat, SideRun, Workload
from refsd_trt.bench.instrument import EngineCall, EngineRecorder
from refsd_trt.bench.machine import MemoryPeak
from refsd_trt.bench.report import write_report
from refsd_trt.bench.scenes import ellipse_mask, sample_scenes, synthetic_scene
from refsd_trt.bench.sides import canonical
from refsd_trt.bench.stats import ratio, speedup, summary
from refsd_trt.engine.torch_backend import TorchEngine
from refsd_trt.export.specs import AxisRange, ModelSpec, TensorSpec
from refsd_trt.samples import SAMPLE_PEOPLE


@pytest.mark.parametrize("people", [1, 4, 16])
def test_synthetic_scene_has_the_people_it_says(people):
    scene = synthetic_scene(0, people, (256, 320))
    height, width = scene.image.shape[:2]
    assert (height, width) == (256, 320) and scene.image.dtype == np.uint8
    assert scene.count == people and scene.people.masks.shape == (people, height, width)
    boxes = scene.people.boxes
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    for box, mask in zip(boxes.int().tolist(), scene.people.masks):
        x0, y0, x1, y1 = box
        assert mask.any() and mask.sum() == mask[y0:y1, x0:x1].sum()  # the mask lies inside its box
    assert scene.people.masks.sum(0).max() <= 1  # one grid cell each: nobody overlaps


def test_synthetic_scenes_are_deterministic_and_distinct():
    a, b, c = synthetic_scene(0, 4), synthetic_scene(0, 4), synthetic_scene(1, 4)
    assert np.array_equal(a.image, b.image) and torch.equal(a.people.boxes, b.people.boxes)
    assert a.key == b.key != c.key and not np.array_equal(a.image, c.image)


def test_sample_scenes_carry_the_hand_measured_people():
    for scene in sample_scenes():
        stem = scene.key.removeprefix("sample-")
        assert scene.count == len(SAMPLE_PEOPLE[stem]) and not scene.synthetic
        height, width = scene.image.shape[:2]
        assert all(x1 <= width and y1 <= height for _, _, x1, y1 in SAMPLE_PEOPLE[stem])


def test_ellipse_mask_touches_every_side():
    mask = ellipse_mask(20, 10)
    assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
    assert not mask[0, 0] and not mask[-1, -1]


def test_square_crop_is_square_inside_the_image_and_covers_the_box():
    for box in [(10, 20, 50, 120), (0, 0, 30, 30), (280, 150, 300, 200), (0, 0, 300, 200)]:
        x0, y0, x1, y1 = square_crop(box, 200, 300)
        assert x1 - x0 == y1 - y0 and 0 <= x0 and 0 <= y0 and x1 <= 300 and y1 <= 200
        if max(box[2] - box[0], box[3] - box[1]) * 1.1 <= 200:
            assert x0 <= box[0] and y0 <= box[1] and x1 >= box[2] and y1 >= box[3]


def test_paste_writes_only_under_the_mask():
    from PIL import Image

    image = np.zeros((40, 40, 3), np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    paste(image, Image.new("RGB", (8, 8), (255, 255, 255)), (5, 5, 25, 25), mask)
    assert (image[mask] == 255).all() and (image[~mask] == 0).all()


def _linear_engine(features_in: int = 8, features_out: int = 4) -> TorchEngine:
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(features_in, features_out)

        def forward(self, x):
            return (self.linear(x),)

    spec = ModelSpec("linear", (TensorSpec("x", "float", ("batch", features_in)),),
                     (TensorSpec("y", "float", ("batch", features_out)),), {"batch": AxisRange(1, 2, 16)})
    return TorchEngine(spec, Wrapped())


def test_flops_of_a_linear_layer_are_exact():
    assert count_flops(nn.Linear(8, 4), [torch.zeros(3, 8)]) == 2 * 3 * 8 * 4
    conv = nn.Conv2d(3, 5, 3, padding=1)
    assert count_flops(conv, [torch.zeros(1, 3, 6, 6)]) == 2 * 6 * 6 * 5 * 3 * 3 * 3


def test_recorder_times_every_call_and_flop_model_multiplies_by_calls():
    engine = _linear_engine()
    with EngineRecorder({"proj": engine, "alias": engine}) as rec:
        engine.run({"x": torch.zeros(2, 8)})
        engine.run({"x": torch.zeros(2, 8)})
        engine.run({"x": torch.zeros(5, 8)})
    assert "run" not in engine.__dict__  # the class method is back
    assert [c.engine for c in rec.calls] == ["proj"] * 3  # one engine under two names is timed once
    assert rec.calls[2].shapes == (("x", (5, 8), "float32"),) and all(c.seconds > 0 for c in rec.calls)
    model = FlopModel({"proj": engine})
    assert model.flops_by_engine(rec.calls) == {"proj": 2 * 8 * 4 * (2 + 2 + 5)}


def test_peak_table_and_throughput():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops(None) is None and peak_flops("Some New GPU") is None
    t = Throughput(flops=4_000_000_000, seconds=2.0, peak=4e9)
    assert t.achieved == 2e9 and t.fraction_of_peak == 0.5
    assert Throughput(1, 1.0, None).to_dict()["fraction_of_peak"] is None


def test_summary_uses_nearest_rank_percentiles():
    s = summary([3.0, 1.0, 2.0, 10.0])
    assert s == {"mean": 4.0, "p50": 2.0, "p90": 10.0, "n": 4}
    assert summary([5.0])["p90"] == 5.0
    assert ratio(1.0, 4.0) == 0.25 and speedup(1.0, 4.0) == 4.0
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None


def test_canonical_folds_the_inpaint_stage_into_refine():
    assert canonical({"inpaint": 1.0, "merge": 0.5}) == {"refine": 1.0, "merge": 0.5}


def _run(name: str, stages: dict[str, float], wall: float, pipeline: float, calls=(), people=(2,), detected=(0,),
         detect_calls: int = 0):
    repeat = Repeat(dict(stages), wall, wall, pipeline, list(calls), detect_calls)
    return SideRun(name, [repeat, repeat], list(people), list(detected), MemoryPeak(2**30, None, None))


def test_time_breakdown_separates_engine_avatar_and_overhead():
    calls = [EngineCall("detector", 0.1, ()), EngineCall("refiner.unet", 0.4, ()), EngineCall("removal.vae_decoder", 0.4, ())]
    stages = {"detect": 0.15, "fit": 0.1, "render": 0.1, "remove": 0.5, "refine": 0.5}
    run = _run("refsd-trt", stages, 1.5, 1.25, calls, detect_calls=1)
    where = analysis.time_breakdown(run, None, None)
    detect, anonymize = where["windows"]["detect"], where["windows"]["anonymize"]
    assert detect["engine_s"] == pytest.approx(0.1) and detect["overhead_fraction_of_engine"] == pytest.approx(0.5)
    assert anonymize["engine_s"] == pytest.approx(0.8) and anonymize["non_engine_compute_s"] == pytest.approx(0.2)
    assert anonymize["overhead_s"] == pytest.approx(0.1) and where["overhead_fraction_of_engine"] == pytest.approx(0.125)
    assert where["engine_calls"] == {"detector": 1, "refiner.unet": 1, "removal.vae_decoder": 1}
    unexposed = analysis.time_breakdown(_run("refsd-trt", stages, 1.5, 1.25, calls[1:]), None, None)
    assert unexposed["windows"]["detect"]["overhead_fraction_of_engine"] is None


def test_engines_map_to_the_stage_they_serve():
    assert analysis.stage_of("detector") == "detect"
    assert analysis.stage_of("removal.unet") == "remove"
    assert analysis.stage_of("refiner.vae_encoder") == "refine"
    assert analysis.stage_of("inpainter.unet") == "refine"
    assert analysis.stage_of("mystery") == "other"


def test_comparison_and_parity(tmp_path):
    scene = synthetic_scene(0, 2, (128, 128))
    workload = Workload("synthetic", [scene], [tmp_path / "x.png"])
    ours = _run("refsd-trt", {"decode": 0.01, "refine": 1.0, "other": 0.1}, 2.0, 1.5)
    base = _run("baseline", {"decode": 0.02, "refine": 4.0, "merge": 0.2}, 8.0, 6.0)
    stages = analysis.stage_names([ours, base])
    assert stages == ["decode", "refine", "merge", "other"]
    a, b = (analysis.side_summary(r, workload, stages) for r in (ours, base))
    assert a["people_per_s"] == pytest.approx(1.0) and b["images_per_s"] == pytest.approx(1 / 8)
    comp = analysis.comparison(a, b, stages)
    assert comp["statistic"] == "p50"
    assert comp["ratio_by_stage"]["refine"] == 0.25 and comp["ratio_by_stage"]["merge"] is None
    assert comp["speedup_end_to_end"] == 4.0
    assert analysis.parity(ours, base, workload)["people_match"]
    assert not analysis.parity(ours, _run("baseline", {}, 1.0, 1.0, people=(1,)), workload)["people_match"]


def test_targets_pass_and_fail():
    assert targets.speedup_target("inpaint", 3.5).passed and not targets.speedup_target("inpaint", 2.0).passed
    assert targets.overhead_target("refsd", 0.05).passed and not targets.overhead_target("refsd", 0.2).passed
    assert targets.speedup_target("refsd", None).passed is None
    points = [{"people_per_image": n, "seconds_per_person": s} for n, s in ((1, 1.0), (2, 0.6), (4, 0.4), (8, 0.3),
                                                                          (16, 0.5))]
    falling = targets.scaling_target("inpaint", points, crop_batch_size=8)
    assert falling.passed and falling.measured == pytest.approx(0.3)  # past the batch size is not judged
    rising = targets.scaling_target("inpaint", points[:2] + [{"people_per_image": 4, "seconds_per_person": 0.9}], 8)
    assert not rising.passed


def test_report_writes_strict_json(tmp_path):
    path = write_report({"a": math.nan, "b": [1.0, math.inf], "c": {"d": 2}}, tmp_path / "out")
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": {"d": 2}}


def test_quick_flag_and_explicit_overrides():
    from refsd_trt.bench.cli import QUICK_SWEEP, register, settings_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    quick = settings_from_args(parser.parse_args(["bench", "--quick", "--steps", "3"]))
    assert (quick.images, quick.people, quick.repeats, quick.steps, quick.sweep) == (1, 2, 1, 3, QUICK_SWEEP)
    assert quick.crop_batch_size == 2
    assert quick.methods == ("inpaint", "refsd") and not quick.samples
    full = settings_from_args(parser.parse_args(["bench", "--method", "refsd", "--no-sweep", "--size", "320x480"]))
    assert full.methods == ("refsd",) and full.sweep is None and full.size == (320, 480) and full.images == 8


def test_speedup_ceiling_puts_the_engines_at_peak_and_keeps_the_fixed_stages():
    stage = lambda seconds: {"p50": seconds}
    ours = {"stages": {"decode": stage(0.1), "detect": stage(1.0), "refine": stage(5.0), "render": stage(0.2),
                       "encode": stage(0.2)},
            "where_the_time_goes": {"flops": {"engines_total": {"gflop": 100.0}, "peak_gflops": 50.0}}}
    # 100 GFLOP at 50 GFLOP/s = 2 s, plus decode, render and encode (0.5 s): 10 s / 2.5 s
    assert analysis.speedup_ceiling(ours, 10.0) == pytest.approx(4.0)
    ours["where_the_time_goes"]["flops"]["peak_gflops"] = None  # no known peak: no ceiling
    assert analysis.speedup_ceiling(ours, 10.0) is None
