"""Person detection and segmentation: device-side pre/post-processing around any YOLOv8 engine,
and the CPU lite detector (packaged ONNX detector + GrabCut masks)."""

from refsd_trt.detection.detector import COCO_PERSON, BoxMasker, PersonDetector, YoloPersonDetector
from refsd_trt.detection.grabcut import GrabCutMasker
from refsd_trt.detection.lite import FALL_DETECTOR_PEOPLE, fall_detector, lite_detector, static_yolo_spec
from refsd_trt.detection.pose import YoloPoseEstimator, attach_keypoints

__all__ = [
    "COCO_PERSON", "FALL_DETECTOR_PEOPLE", "BoxMasker", "GrabCutMasker", "PersonDetector", "YoloPersonDetector",
    "YoloPoseEstimator", "attach_keypoints", "fall_detector", "lite_detector", "static_yolo_spec",
]
