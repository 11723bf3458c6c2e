"""Write an RGB tensor as an image file with no metadata at all, atomically.

The file is encoded from the bare pixels (``Image.fromarray``), so nothing of the input travels
with it: no EXIF (hence no GPS, no camera serial, no EXIF thumbnail, which can show the unredacted
photo), no XMP, no IPTC, no comments, no PNG text or time chunks, no ICC profile. Pixels are sRGB
(``read_image`` converts to it), which is what a file without a profile means to every viewer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from refsd_trt.io.atomic import AtomicOutput
from refsd_trt.io.errors import OutputError
from refsd_trt.io.formats import IMAGE_FORMATS


def _encoder_options(file_format: str, quality: int) -> dict[str, object]:
    if file_format == "JPEG":
        return {"quality": quality, "optimize": True}
    if file_format == "WEBP":
        return {"quality": quality, "method": 4}
    if file_format == "TIFF":
        return {"compression": "tiff_deflate"}
    return {}


def write_image(image: torch.Tensor, path: str | Path, quality: int = 95) -> Path:
    """Encode ``image`` ((3, H, W) uint8 RGB, any device) to ``path``; the suffix picks the format.

    ``quality`` applies to JPEG and WebP. Parent folders are created. Raises ``OutputError``.
    """
    path = Path(path)
    file_format = IMAGE_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise OutputError(
            path, f"unsupported image suffix '{path.suffix}' (use one of {', '.join(IMAGE_FORMATS)})"
        )
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise OutputError(path, f"expected a (3, H, W) uint8 tensor, got {tuple(image.shape)} {image.dtype}")
    pixels = np.ascontiguousarray(image.detach().to("cpu").permute(1, 2, 0).numpy())
    try:
        with AtomicOutput(path) as temp:
            Image.fromarray(pixels, mode="RGB").save(
                temp, format=file_format, **_encoder_options(file_format, quality)
            )
    except OSError as err:
        raise OutputError(path, f"cannot write: {err.strerror or err}") from err
    return path
