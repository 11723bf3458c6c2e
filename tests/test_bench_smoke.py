"""``refsd-trt bench --quick`` end to end on the tiny zoo: both methods, both sides, the report's
shape and the people-count parity. Timings are not judged here (the benchmark reports its targets)."""

from __future__ import annotations

import argparse
import json

import pytest

pytest.importorskip("refsd_trt.methods", reason="the Anonymizer's method builders are not in this tree yet")


def test_quick_benchmark_writes_a_complete_report(tmp_path):
    from refsd_trt.bench.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["bench", "--quick", "-o", str(tmp_path)])
    assert args.func(args) == 0  # 2 would mean the sides processed different people counts

    report = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert {"schema", "machine", "settings", "people_source", "methods", "targets", "targets_passed"} <= set(report)
    assert report["people_source"]["kind"] == "oracle"
    assert {"cpu", "cpu_cores", "torch_threads", "gpu"} <= set(report["machine"])
    # ultralytics' predictor resets torch's thread count process-wide; the baseline puts it back
    assert report["machine"]["torch_threads_at_end"] == report["machine"]["torch_threads"]
    assert report["machine"]["peak_gflops"] > 0 and report["machine"]["peak_source"].startswith("measured")
    for method in ("inpaint", "refsd"):
        data = report["methods"][method]
        assert all({"backend", "precision"} <= set(e) for e in data["engines"].values())
        w = data["workloads"]["synthetic"]
        assert w["parity"]["people_match"] and w["parity"]["people_refsd_trt"] == [2]
        assert w["parity"]["detector_counts_match"]
        for side in ("refsd-trt", "baseline"):
            assert {"decode", "detect", "refine", "merge", "encode"} <= set(w[side]["stages"])
            assert {"mean", "p50", "p90"} <= set(w[side]["end_to_end"])
            assert w[side]["people_per_s"] > 0 and w[side]["memory"]["host_rss_peak_mib"] > 0
        where = w["refsd-trt"]["where_the_time_goes"]
        assert where["windows"]["anonymize"]["engine_s"] > 0 and where["overhead_fraction_of_engine"] is not None
        assert where["flops"]["by_stage"]["refine"]["gflop"] > 0
        assert w["comparison"]["speedup_end_to_end"] > 0
        assert {"people_per_image", "crop_batch_size", "image_size"} <= set(data["scaling"])
        assert len(data["scaling"]["people_per_image"]) == 2
    assert {t["name"] for t in report["targets"]} == {
        "end_to_end_speedup", "orchestration_overhead", "time_per_person_falls"}
