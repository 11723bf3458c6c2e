"""Bring any decodable still image to 8-bit sRGB RGB, saying what was changed.

Rules (each conversion adds one note to ``LoadedImage.notes``):

- 16-bit samples (16-bit PNG/TIFF, modes ``I;16*``): the high byte of each sample is kept. That is
  what Pillow already does when it decodes 16-bit colour PNGs, so grey and colour follow one rule.
- 32-bit integer or float samples (modes ``I``, ``F``): refused. Their value range is not known, so
  no 8-bit mapping is safe (a wrong guess gives a black or white image that detection misses).
- Alpha (RGBA, LA, PA, palette transparency): composited over white, then dropped. Compositing
  rather than just dropping alpha keeps pixels the input hid hidden: the RGB under fully
  transparent pixels can hold anything, including an unredacted person nobody sees in the input.
  The output is opaque; the note gives the share of pixels that were not opaque.
- An embedded ICC profile other than sRGB (Display P3, Adobe RGB, CMYK press profiles, grey
  gamma): pixels are converted to sRGB with littlecms, because outputs are written without any
  profile. An unreadable profile is ignored with a note.
- CMYK without a profile, YCbCr, 1-bit, grey, palette: Pillow's conversion to RGB, with a note.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageCms

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_BACKGROUND = (255, 255, 255)


class UnsupportedPixelFormat(ValueError):
    """The decoded pixels have no safe conversion to 8-bit RGB; the message says why."""


def _keep_profile(source: Image.Image, derived: Image.Image) -> Image.Image:
    """Carry the ICC profile over to an image built from fresh pixels (it describes them still)."""
    if source.info.get("icc_profile"):
        derived.info["icc_profile"] = source.info["icc_profile"]
    return derived


def reduce_16bit(im: Image.Image, decoded_rawmode: str) -> tuple[Image.Image, list[str]]:
    """Map 16-bit greyscale to 8 bits; note 16-bit colour that Pillow already reduced on decode."""
    if im.mode.startswith("I;16"):
        high_bytes = (np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8)
        reduced = _keep_profile(im, Image.fromarray(high_bytes, mode="L"))
        return reduced, ["16-bit greyscale reduced to 8 bits (high byte)"]
    if im.mode in ("I", "F"):
        raise UnsupportedPixelFormat(
            f"{'32-bit integer' if im.mode == 'I' else 'floating-point'} samples (mode {im.mode}) have no "
            "known value range; convert the file to 8 or 16 bits per sample first"
        )
    if ";16" in decoded_rawmode:
        return im, ["16-bit colour reduced to 8 bits (high byte)"]
    return im, []


def flatten_alpha(im: Image.Image) -> tuple[Image.Image, list[str]]:
    """Composite transparent images over white and drop the alpha channel."""
    has_alpha = "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info
    if not has_alpha:
        return im, []
    rgba = im.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"))
    not_opaque = float((alpha < 255).mean())
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, _BACKGROUND + (255,)), rgba).convert("RGB")
    return _keep_profile(im, flat), [
        f"alpha channel composited over white and dropped ({not_opaque:.1%} of pixels not opaque)"
    ]


def _profile_name(profile: ImageCms.ImageCmsProfile) -> str:
    return ImageCms.getProfileDescription(profile).strip() or "unnamed"


_MODE_NOTES = {
    "CMYK": "CMYK converted to RGB without a colour profile (colours approximate)",
    "L": "greyscale converted to RGB",
    "1": "1-bit image converted to RGB",
    "P": "palette image converted to RGB",
}


def _plain_rgb(im: Image.Image) -> tuple[Image.Image, list[str]]:
    if im.mode == "RGB":
        return im, []
    try:
        converted = im.convert("RGB")
    except ValueError as err:
        raise UnsupportedPixelFormat(f"pixel mode {im.mode} cannot be converted to RGB ({err})") from err
    return converted, [_MODE_NOTES.get(im.mode, f"{im.mode} converted to RGB")]


def to_srgb(im: Image.Image) -> tuple[Image.Image, list[str]]:
    """Convert to RGB in sRGB, through the embedded ICC profile when there is one."""
    if im.mode not in ("RGB", "L", "CMYK"):  # the modes ICC profiles describe; others go to RGB first
        rgb, notes = _plain_rgb(im)
        im = _keep_profile(im, rgb)
    else:
        notes = []
    icc = im.info.get("icc_profile")
    if not icc:
        rgb, more = _plain_rgb(im)
        return rgb, notes + more
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = _profile_name(profile)
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        rgb, more = _plain_rgb(im)
        return rgb, notes + ["embedded ICC profile unreadable: ignored, pixels taken as sRGB"] + more
    if im.mode == "RGB" and name.lower().startswith("srgb"):
        return im, notes
    try:
        converted = ImageCms.profileToProfile(im, profile, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as err:
        rgb, more = _plain_rgb(im)
        return rgb, notes + [f"ICC profile '{name}' could not be applied ({err}): ignored"] + more
    return converted, notes + [f"{im.mode} pixels converted from ICC profile '{name}' to sRGB"]
