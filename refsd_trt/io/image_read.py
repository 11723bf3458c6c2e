"""Read one still image into an RGB uint8 tensor, or refuse it with one clear line.

Decisions per kind of input (``InputError.kind`` in brackets):

- missing [missing], unreadable for permissions [permission], a directory or device [not-a-file],
  zero bytes [empty]: refused.
- content that is not JPEG (MPO included), PNG, WebP, BMP, TIFF or GIF, whatever the suffix
  [not-an-image]: refused. Pillow's other decoders are never offered untrusted bytes (its EPS
  plugin would run Ghostscript on them).
- truncated or corrupt data [corrupt]: refused, never decoded partially; a half-grey image would
  be anonymized and shipped as if it were the photo. (Refusal relies on Pillow's default
  ``ImageFile.LOAD_TRUNCATED_IMAGES = False``.)
- more pixels than ``ReadLimits.max_pixels`` [decompression-bomb]: refused from the header,
  before any pixel is decoded. Pillow's own bomb check would only warn between its limit and twice
  it; that warning is silenced in favour of this configurable check. Pillow's hard error (above
  twice ``PIL.Image.MAX_IMAGE_PIXELS``) still applies: raise that too to go beyond 179 Mpx.
- a side longer than ``ReadLimits.max_side`` [too-large]: refused from the header.
- animated or multi-page files (GIF, APNG, WebP, TIFF with more than one frame) [animated]:
  refused. Taking frame 0 would silently drop every person who is only in later frames; such
  inputs belong to video mode. MPO files (the JPEGs phones write with a depth map, gain map or
  preview as extra pictures) are not animations: the primary picture is read and the extra pictures
  are dropped, with a note.
- 32-bit integer or float pixels [unsupported]: refused (see ``color``).
- 16-bit, alpha, CMYK, greyscale, palette, non-sRGB ICC profiles: converted with a note each
  (rules in ``color``).
- EXIF orientation: applied (``ImageOps.exif_transpose``), so tensors and outputs are upright;
  an unreadable EXIF block leaves the stored orientation, with a note.
- damage Pillow decodes past (corrupt EXIF, for one) reaches it as warnings: each becomes a
  ``decoder warning: ...`` note instead of a line on stderr. Before Python 3.14 the warnings
  filter is process-wide, so decode in worker processes rather than threads for exact notes.

The input is opened read-only, once: its sha256 is hashed from the same handle the pixels are
decoded from, so ``LoadedImage.sha256`` describes exactly the bytes that were read.
"""

from __future__ import annotations

import struct
import sys
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from refsd_trt.io.color import UnsupportedPixelFormat, flatten_alpha, reduce_16bit, to_srgb
from refsd_trt.io.errors import InputError, InputErrorKind
from refsd_trt.io.hashing import sha256_stream
from refsd_trt.io.input_file import open_input

# What Pillow's decoders raise on bad data (their fuzzing contract), plus the stdlib errors a few
# plugins let through. MemoryError is deliberately not caught.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, IndexError)
_EXIF_ORIENTATION = 0x0112
# Only these decoders ever see an input, whatever its suffix says: Pillow's other plugins include
# rarely-fuzzed formats and EPS, which runs Ghostscript on the file. (JPEG's opener also returns MPO.)
_DECODERS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")


@dataclass(frozen=True)
class ReadLimits:
    """Refuse images beyond these sizes before decoding them."""

    max_pixels: int = 2 * 89_478_485  # Pillow's decompression-bomb error threshold, about 179 Mpx
    max_side: int = 32_768  # longest side; the pipeline's tiling and engine profiles stop there


DEFAULT_LIMITS = ReadLimits()


@dataclass
class LoadedImage:
    """An upright 8-bit sRGB image and what it took to get there."""

    pixels: torch.Tensor  # (3, H, W) uint8, RGB, EXIF orientation applied, CPU
    path: Path
    format: str  # Pillow's name for the file's format: JPEG, PNG, WEBP, MPO, ...
    original_size: tuple[int, int]  # (width, height) as stored in the file, before EXIF orientation
    sha256: str  # of the file's bytes
    notes: list[str] = field(default_factory=list)  # one line per conversion applied

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of ``pixels``: the size every output of this image must have."""
        return int(self.pixels.shape[2]), int(self.pixels.shape[1])


def _check_header(path: Path, im: Image.Image, limits: ReadLimits) -> None:
    width, height = im.size
    if width * height > limits.max_pixels:
        raise InputError(
            path,
            InputErrorKind.DECOMPRESSION_BOMB,
            f"possible decompression bomb: header claims {width}x{height} = {width * height / 1e6:.0f} Mpx, "
            f"above the limit of {limits.max_pixels / 1e6:.0f} Mpx (ReadLimits.max_pixels)",
        )
    if max(width, height) > limits.max_side:
        raise InputError(
            path,
            InputErrorKind.TOO_LARGE,
            f"image too large: {width}x{height} px, a side above the limit of {limits.max_side} px "
            "(ReadLimits.max_side)",
        )
    try:
        frames = getattr(im, "n_frames", 1)  # GIF and WebP count frames by reading through them
    except _DECODE_ERRORS as err:
        raise InputError(path, InputErrorKind.CORRUPT, f"unreadable frame structure ({err})") from None
    if frames > 1 and im.format != "MPO":
        raise InputError(
            path,
            InputErrorKind.ANIMATED,
            f"animated or multi-page {im.format} with {frames} frames: refusing to anonymize only the "
            "first frame; convert it to a video and use video mode, or split the frames",
        )


def _rawmode(im: Image.Image) -> str:
    """How the decoder will unpack the file's samples (e.g. ``RGB;16B``): the only place Pillow says
    that a colour file had 16 bits per sample, since it reduces them to 8 while decoding."""
    if not im.tile:
        return ""
    args = im.tile[0].args
    first = args[0] if isinstance(args, tuple) and args else args
    return first if isinstance(first, str) else ""


def _upright(im: Image.Image) -> tuple[Image.Image, list[str]]:
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation not in range(2, 9):  # 1 is upright; anything else is not an orientation
            return im, []
        return ImageOps.exif_transpose(im), [f"EXIF orientation {orientation} applied"]
    except _DECODE_ERRORS as err:
        return im, [f"EXIF unreadable ({err}): stored orientation kept"]


def read_image(path: str | Path, limits: ReadLimits = DEFAULT_LIMITS) -> LoadedImage:
    """Decode ``path`` to an upright sRGB ``LoadedImage``; raise ``InputError`` if it cannot be."""
    path = Path(path)
    with open_input(path) as stream, warnings.catch_warnings(record=True) as warned:
        # Pillow reports damage it can live with (corrupt EXIF, odd chunks) as warnings on stderr;
        # they become notes of this image instead. ReadLimits.max_pixels replaces Pillow's
        # decompression-bomb warning, which would only print.
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        sha256 = sha256_stream(stream)
        stream.seek(0)
        pixels, file_format, original_size, notes = _decode(path, stream, limits)
    notes += sorted({f"decoder warning: {' '.join(str(w.message).split())}" for w in warned})
    return LoadedImage(pixels, path, file_format, original_size, sha256, notes)


def _pillow_open() -> Callable[..., Image.Image]:
    """Pillow's own ``Image.open``. Importing ultralytics (export time, possibly in this process)
    replaces it process-wide with a wrapper that answers an unidentified file by trying to install
    and import a HEIF plugin; a refused input must stay a plain refusal."""
    if Image.open.__module__ == Image.__name__:
        return Image.open
    return getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", Image.open)


def _decode(
    path: Path, stream: BinaryIO, limits: ReadLimits
) -> tuple[torch.Tensor, str, tuple[int, int], list[str]]:
    try:
        im = _pillow_open()(stream, formats=_DECODERS)
    except Image.DecompressionBombError as err:
        raise InputError(
            path,
            InputErrorKind.DECOMPRESSION_BOMB,
            f"possible decompression bomb refused by Pillow before decoding ({err})",
        ) from None
    except UnidentifiedImageError:
        raise InputError(
            path, InputErrorKind.NOT_AN_IMAGE, f"not an image in a supported format ({', '.join(_DECODERS)})"
        ) from None
    except _DECODE_ERRORS as err:
        raise InputError(path, InputErrorKind.CORRUPT, f"unreadable image header: {err}") from None
    with im:
        _check_header(path, im, limits)
        notes = (
            [f"MPO with {im.n_frames} pictures: primary picture read, the others dropped"]
            if im.format == "MPO"
            else []
        )
        decoded_rawmode = _rawmode(im)
        try:
            im.load()
        except _DECODE_ERRORS as err:
            raise InputError(
                path, InputErrorKind.CORRUPT, f"truncated or corrupt image data ({err})"
            ) from None
        try:
            rgb, step_notes = reduce_16bit(im, decoded_rawmode)
            notes += step_notes
            for step in (_upright, flatten_alpha, to_srgb):
                rgb, step_notes = step(rgb)
                notes += step_notes
        except UnsupportedPixelFormat as err:
            raise InputError(path, InputErrorKind.UNSUPPORTED, str(err)) from None
        pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        return pixels, im.format or "unknown", im.size, notes
