"""Write an RGB tensor as an image file with no metadata at all, atomically.

The file is encoded from the bare pixels (``Image.fromarray``), so nothing of the input travels
with it: no EXIF (hence no GPS, no camera serial, no EXIF thumbnail, which can show the unredacted
photo), no XMP, no IPTC, no comments, no PNG text or time chunks, no ICC profile. Pixels are sRGB
(``read_image`` converts to it), which is what a file without a profile means to every viewer.

The one exception is asked for: ``write_image(..., exif=MetadataPolicy.exif_from(source))`` writes
the EXIF tags a ``--keep-metadata`` policy allows (``metadata_policy``) into JPEG, PNG, WebP and TIFF
outputs. Even then Orientation and any IFD1 (thumbnail) are never written, whatever ``exif`` holds.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from refsd_trt.io.atomic import AtomicOutput
from refsd_trt.io.errors import OutputError
from refsd_trt.io.formats import IMAGE_FORMATS
from refsd_trt.io.metadata_policy import EXIF_FORMATS

_ORIENTATION = 0x0112
_JPEG_MAX_EXIF = 65533  # bytes of one APP1 segment, "Exif\0\0" header included (Pillow's limit)


def _encoder_options(file_format: str, quality: int) -> dict[str, object]:
    if file_format == "JPEG":
        return {"quality": quality, "optimize": True}
    if file_format == "WEBP":
        return {"quality": quality, "method": 4}
    if file_format == "TIFF":
        return {"compression": "tiff_deflate"}
    return {}


def _exif_options(path: Path, file_format: str, exif: Image.Exif) -> dict[str, object]:
    """Encoder options that write ``exif`` (re-serialized: no Orientation, no IFD1) into a format
    that carries EXIF; none when nothing is left. TIFF is then written uncompressed: Pillow's
    compressing (libtiff) TIFF writer cannot write the EXIF and GPS IFDs."""
    if file_format not in EXIF_FORMATS:
        return {}  # BMP: MetadataPolicy.note_for(path) gives the manifest its note
    clean = Image.Exif()
    try:
        clean.load(exif.tobytes())
        clean.pop(_ORIENTATION, None)
        if not len(clean):
            return {}
        data = clean.tobytes()
    except (ValueError, TypeError, OverflowError, KeyError, struct.error) as err:
        raise OutputError(path, f"cannot encode the EXIF to keep: {err}") from None
    if file_format == "JPEG" and len(data) > _JPEG_MAX_EXIF:
        raise OutputError(path, f"EXIF to keep is {len(data)} bytes, more than one JPEG segment holds")
    return {"exif": data, "compression": "raw"} if file_format == "TIFF" else {"exif": data}


def write_image(
    image: torch.Tensor, path: str | Path, quality: int = 95, *, exif: Image.Exif | None = None
) -> Path:
    """Encode ``image`` ((3, H, W) uint8 RGB, any device) to ``path``; the suffix picks the format.

    ``quality`` applies to JPEG and WebP. Parent folders are created. Raises ``OutputError``.
    ``exif`` (None: no metadata at all, the default) is written into JPEG, PNG, WebP and TIFF
    outputs, without Orientation or thumbnail; BMP cannot carry it. Pass only what a
    ``MetadataPolicy`` allows: ``exif=policy.exif_from(source)``.
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
    options = _encoder_options(file_format, quality)
    if exif is not None:
        options.update(_exif_options(path, file_format, exif))
    try:
        with AtomicOutput(path) as temp:
            Image.fromarray(pixels, mode="RGB").save(temp, format=file_format, **options)
    except OSError as err:
        raise OutputError(path, f"cannot write: {err.strerror or err}") from err
    return path
