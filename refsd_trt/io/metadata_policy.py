"""Which EXIF of an input an output may keep (``--keep-metadata``): nothing by default.

Outputs are encoded from bare pixels (``write_image``), so by default nothing of an input travels
with them. ``MetadataPolicy.parse("time,gps")`` names groups of EXIF tags to carry over; every
group is an explicit allow-list (``GROUP_TAGS``), and ``MetadataPolicy.exif_from(source)`` builds a
fresh ``PIL.Image.Exif`` holding only those tags, read from the source file's IFD0, EXIF IFD and
GPS IFD. Anything not in the table is never copied, whatever group is asked for: the IFD1 thumbnail
(a copy of the unredacted photo), MakerNote, UserComment, serial numbers, owner, artist, copyright,
software, image description, subject area/location, ImageUniqueID, the interoperability IFD, and
Orientation (the reader applies it to the pixels; writing it again would rotate twice). XMP, IPTC,
comments, PNG text chunks and ICC profiles are not EXIF and are never written at all.

Groups (tag numbers in ``GROUP_TAGS``):

- ``time``: DateTime; DateTimeOriginal, DateTimeDigitized; OffsetTime, OffsetTimeOriginal,
  OffsetTimeDigitized; SubSecTime, SubSecTimeOriginal, SubSecTimeDigitized.
- ``gps``: the standard GPS IFD tags 0x00-0x1F except the two free-text ones (GPSProcessingMethod,
  GPSAreaInformation): version, latitude/longitude/altitude and their refs, GPS time and date
  stamps, satellites, status, measure mode, DOP, speed, track, image direction, map datum,
  destination, differential, horizontal positioning error.
- ``camera``: Make, Model; LensMake, LensModel, LensSpecification; ExposureTime, FNumber,
  ExposureProgram, ISOSpeedRatings (PhotographicSensitivity), SensitivityType,
  RecommendedExposureIndex, ISOSpeed, ShutterSpeedValue, ApertureValue, BrightnessValue,
  ExposureBiasValue, MaxApertureValue, MeteringMode, LightSource, Flash, FocalLength,
  FocalLengthIn35mmFilm, ExposureMode, WhiteBalance, DigitalZoomRatio, SceneCaptureType.
  Never BodySerialNumber, LensSerialNumber, CameraOwnerName.

Values are copied as Pillow reads them; a value that is not a plain number, string, short byte
string or short tuple of those, or that Pillow cannot encode, is dropped. The numeric type of a tag
in the EXIF IFD is the one Pillow infers from its value (Pillow has no type table for that IFD: a
non-negative SRATIONAL is written as RATIONAL, a small LONG as SHORT); GPS and IFD0 tags keep their
standard types.

Formats: JPEG, PNG (eXIf chunk), WebP and TIFF outputs carry the kept EXIF; BMP outputs and video
outputs (``.mp4`` through OpenCV) cannot, and ``MetadataPolicy.note_for(output)`` says so in one
line for the manifest instead of dropping it silently. TIFF outputs that carry EXIF are written
uncompressed, because Pillow's compressing (libtiff) TIFF writer cannot write the EXIF and GPS IFDs.

Use from the runner::

    policy = MetadataPolicy.parse(config.keep_metadata)
    write_image(pixels, out_path, quality, exif=policy.exif_from(source_path))
    note = policy.note_for(out_path)  # None, or a line for the manifest's notes
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from numbers import Rational
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

IFD0 = 0  # the image's own IFD; the other two are the pointer tags that hold them
EXIF_IFD = int(ExifTags.IFD.Exif)  # 0x8769
GPS_IFD = int(ExifTags.IFD.GPSInfo)  # 0x8825

# group -> ((IFD, tag, name), ...): the complete list of what each group may copy.
GROUP_TAGS: dict[str, tuple[tuple[int, int, str], ...]] = {
    "time": (
        (IFD0, 0x0132, "DateTime"),
        (EXIF_IFD, 0x9003, "DateTimeOriginal"),
        (EXIF_IFD, 0x9004, "DateTimeDigitized"),
        (EXIF_IFD, 0x9010, "OffsetTime"),
        (EXIF_IFD, 0x9011, "OffsetTimeOriginal"),
        (EXIF_IFD, 0x9012, "OffsetTimeDigitized"),
        (EXIF_IFD, 0x9290, "SubSecTime"),
        (EXIF_IFD, 0x9291, "SubSecTimeOriginal"),
        (EXIF_IFD, 0x9292, "SubSecTimeDigitized"),
    ),
    "gps": tuple(
        (GPS_IFD, int(tag), tag.name)
        for tag in ExifTags.GPS
        if tag not in (ExifTags.GPS.GPSProcessingMethod, ExifTags.GPS.GPSAreaInformation)
    ),
    "camera": (
        (IFD0, 0x010F, "Make"),
        (IFD0, 0x0110, "Model"),
        (EXIF_IFD, 0xA433, "LensMake"),
        (EXIF_IFD, 0xA434, "LensModel"),
        (EXIF_IFD, 0xA432, "LensSpecification"),
        (EXIF_IFD, 0x829A, "ExposureTime"),
        (EXIF_IFD, 0x829D, "FNumber"),
        (EXIF_IFD, 0x8822, "ExposureProgram"),
        (EXIF_IFD, 0x8827, "ISOSpeedRatings"),
        (EXIF_IFD, 0x8830, "SensitivityType"),
        (EXIF_IFD, 0x8832, "RecommendedExposureIndex"),
        (EXIF_IFD, 0x8833, "ISOSpeed"),
        (EXIF_IFD, 0x9201, "ShutterSpeedValue"),
        (EXIF_IFD, 0x9202, "ApertureValue"),
        (EXIF_IFD, 0x9203, "BrightnessValue"),
        (EXIF_IFD, 0x9204, "ExposureBiasValue"),
        (EXIF_IFD, 0x9205, "MaxApertureValue"),
        (EXIF_IFD, 0x9207, "MeteringMode"),
        (EXIF_IFD, 0x9208, "LightSource"),
        (EXIF_IFD, 0x9209, "Flash"),
        (EXIF_IFD, 0x920A, "FocalLength"),
        (EXIF_IFD, 0xA405, "FocalLengthIn35mmFilm"),
        (EXIF_IFD, 0xA402, "ExposureMode"),
        (EXIF_IFD, 0xA403, "WhiteBalance"),
        (EXIF_IFD, 0xA404, "DigitalZoomRatio"),
        (EXIF_IFD, 0xA406, "SceneCaptureType"),
    ),
}
METADATA_GROUPS: tuple[str, ...] = tuple(GROUP_TAGS)  # canonical order
# Output formats (Pillow names) whose files can carry EXIF; every other output drops it with a note.
EXIF_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "TIFF"})
_MAX_TEXT = 256  # characters of a string value; longer ones are not camera settings, they are dropped
_MAX_BYTES = 16  # bytes of a byte-string value (GPSVersionID has 4, GPSAltitudeRef 1)
_MAX_ITEMS = 8  # elements of a tuple value (GPSLatitude has 3, LensSpecification 4)
_READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError)


def _plain(value: Any) -> bool:
    """A value an allow-listed tag may carry: a finite number, a short string or byte string, or a
    short tuple of numbers."""
    if isinstance(value, str):
        return len(value) <= _MAX_TEXT
    if isinstance(value, bytes):
        return len(value) <= _MAX_BYTES
    if isinstance(value, tuple):
        return 0 < len(value) <= _MAX_ITEMS and all(
            isinstance(v, (int, Rational)) and not isinstance(v, bool) and _finite(v) for v in value
        )
    return isinstance(value, (int, Rational)) and not isinstance(value, bool) and _finite(value)


def _finite(value: Any) -> bool:
    if isinstance(value, int):
        return True
    try:
        Fraction(value.numerator, value.denominator)
    except (ZeroDivisionError, TypeError, ValueError):
        return False
    return True


def _encodable(ifd: int, tag: int, value: Any) -> bool:
    probe = Image.Exif()
    (probe if ifd == IFD0 else probe.get_ifd(ifd))[tag] = value
    try:
        probe.tobytes()
    except (ValueError, TypeError, OverflowError, KeyError, struct.error):  # Pillow cannot write it: not kept
        return False
    return True


@dataclass(frozen=True)
class MetadataPolicy:
    """The EXIF groups outputs keep; ``MetadataPolicy()`` keeps nothing (the default)."""

    groups: tuple[str, ...] = ()  # a subset of METADATA_GROUPS, in METADATA_GROUPS' order

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in GROUP_TAGS]
        if unknown:
            raise ValueError(_unknown_message(unknown[0]))
        object.__setattr__(self, "groups", tuple(g for g in METADATA_GROUPS if g in self.groups))

    @classmethod
    def parse(cls, spec: str | Iterable[str] | None) -> MetadataPolicy:
        """``"time,gps"`` (or ``["time", "gps"]``) -> the policy keeping those groups. ``None``, ``""``
        and ``"none"`` keep nothing. An unknown group is a one-line ``ValueError`` naming the allowed."""
        if spec is None:
            return cls()
        names = spec.split(",") if isinstance(spec, str) else list(spec)
        if not all(isinstance(name, str) for name in names):
            raise ValueError(f"metadata groups must be names ({', '.join(METADATA_GROUPS)}), got {spec!r}")
        cleaned = [name.strip().lower() for name in names if name.strip()]
        if cleaned == ["none"]:
            return cls()
        for name in cleaned:
            if name not in GROUP_TAGS:
                raise ValueError(_unknown_message(name))
        return cls(tuple(cleaned))

    @property
    def keeps_anything(self) -> bool:
        return bool(self.groups)

    def tags(self) -> tuple[tuple[int, int, str], ...]:
        """(IFD, tag, name) of every tag this policy keeps."""
        return tuple(entry for group in self.groups for entry in GROUP_TAGS[group])

    def to_dict(self) -> dict[str, Any]:
        """For the manifest: the groups and the names of the tags they allow."""
        return {"keep": list(self.groups), "tags": [name for _, _, name in self.tags()]}

    def exif_from(self, source: str | Path) -> Image.Exif | None:
        """The allowed EXIF of ``source`` as a fresh ``Image.Exif`` for ``write_image(..., exif=)``;
        None when this policy keeps nothing, the source has none of the allowed tags, or its EXIF
        cannot be read (then nothing is kept)."""
        return kept_exif(source, self)

    def note_for(self, output: str | Path) -> str | None:
        """One line for the manifest when this policy keeps something but ``output``'s format cannot
        carry EXIF (BMP, videos); None otherwise."""
        if not self.groups:
            return None
        from refsd_trt.io.formats import IMAGE_FORMATS

        file_format = IMAGE_FORMATS.get(Path(output).suffix.lower())
        if file_format in EXIF_FORMATS:
            return None
        kind = file_format or Path(output).suffix.lstrip(".").upper() or "this"
        return (f"metadata not kept: {kind} outputs cannot carry EXIF "
                f"(--keep-metadata {','.join(self.groups)} applies to JPEG, PNG, WebP and TIFF outputs)")


def _unknown_message(name: str) -> str:
    return f"unknown metadata group {name!r}: allowed are {', '.join(METADATA_GROUPS)} (comma-separated)"


def kept_exif(source: str | Path, policy: MetadataPolicy) -> Image.Exif | None:
    """A fresh ``Image.Exif`` holding only ``policy``'s allowed tags of ``source``'s EXIF (see
    ``MetadataPolicy.exif_from``). The source is opened read-only with the reader's decoders only."""
    if not policy.groups:
        return None
    from refsd_trt.io.image_read import _DECODERS, _pillow_open

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged EXIF is already a note of read_image
            with open(source, "rb") as stream, _pillow_open()(stream, formats=_DECODERS) as im:
                found = im.getexif()
                ifds = {IFD0: dict(found)}
                for ifd in {ifd for ifd, _, _ in policy.tags()} - {IFD0}:
                    ifds[ifd] = dict(found.get_ifd(ifd))
    except (Image.UnidentifiedImageError, *_READ_ERRORS):
        return None
    exif = Image.Exif()
    kept = 0
    for ifd, tag, _ in policy.tags():
        value = ifds[ifd].get(tag)
        if value is None or not _plain(value) or not _encodable(ifd, tag, value):
            continue
        (exif if ifd == IFD0 else exif.get_ifd(ifd))[tag] = value
        kept += 1
    return exif if kept else None
