"""List the metadata a file carries, by parsing its container, not by trusting Pillow's reading of it.

Used by tests (and by anyone auditing outputs) to prove that nothing of an input survives:
``metadata_report(out).found == ()``. Recognised containers: JPEG segments, PNG chunks, WebP RIFF
chunks, TIFF tags. For every file it also scans the raw bytes for metadata signatures, which catches
blocks hidden where a parser would not look.

Vocabulary of ``found``: ``exif``, ``gps``, ``exif-thumbnail``, ``xmp``, ``icc``, ``iptc``,
``comment``, ``mpf`` (extra pictures), ``text:<keyword>`` (PNG text chunks), ``chunk:<id>`` /
``segment:<marker>`` / ``tag:<number>`` (anything else not known to be harmless) and
``signature:<name>`` (raw byte scan).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

_SIGNATURES = {
    "exif": b"Exif\x00\x00",
    "xmp": b"<x:xmpmeta",
    "xmp-namespace": b"http://ns.adobe.com/xap/1.0/",
    "icc": b"ICC_PROFILE\x00",
    "iptc": b"Photoshop 3.0\x00",
}
_GPS_IFD = 0x8825
_THUMBNAIL_TAGS = {0x0201, 0x0111}  # JPEGInterchangeFormat, StripOffsets
_HARMLESS_PNG = {
    b"IHDR",
    b"PLTE",
    b"IDAT",
    b"IEND",
    b"tRNS",
    b"gAMA",
    b"cHRM",
    b"sRGB",
    b"sBIT",
    b"pHYs",
    b"bKGD",
}
_HARMLESS_WEBP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"}
# Baseline TIFF structure tags: image geometry and encoding, nothing about who, where or when.
_HARMLESS_TIFF = {254, 256, 257, 258, 259, 262, 273, 274, 277, 278, 279, 282, 283, 284, 296, 317, 338, 339}


@dataclass(frozen=True)
class MetadataReport:
    path: Path
    format: str
    found: tuple[str, ...]  # sorted, no duplicates; empty for a clean file

    @property
    def clean(self) -> bool:
        return not self.found


def _exif_items(tiff: bytes) -> set[str]:
    """EXIF from a TIFF-structured block: GPS IFD pointer in IFD0, thumbnail in IFD1."""
    found = {"exif"}
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return found
    order = "<" if tiff[:2] == b"II" else ">"

    def ifd(offset: int) -> tuple[set[int], int]:
        if offset <= 0 or offset + 2 > len(tiff):
            return set(), 0
        (count,) = struct.unpack_from(order + "H", tiff, offset)
        end = offset + 2 + 12 * count
        if end + 4 > len(tiff):
            return set(), 0
        tags = {struct.unpack_from(order + "H", tiff, offset + 2 + 12 * i)[0] for i in range(count)}
        return tags, struct.unpack_from(order + "I", tiff, end)[0]

    ifd0_tags, ifd1_offset = ifd(struct.unpack_from(order + "I", tiff, 4)[0])
    if _GPS_IFD in ifd0_tags:
        found.add("gps")
    ifd1_tags, _ = ifd(ifd1_offset)
    if ifd1_tags & _THUMBNAIL_TAGS:
        found.add("exif-thumbnail")
    return found


def _jpeg_items(data: bytes) -> set[str]:
    found: set[str] = set()
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xD9 or marker == 0xDA:  # end of image / start of scan: no more headers
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
            found |= _exif_items(body[6:])
        elif marker == 0xE1 and (body.startswith(b"http://ns.adobe.com/") or b"<x:xmpmeta" in body):
            found.add("xmp")
        elif marker == 0xE2 and body.startswith(b"ICC_PROFILE\x00"):
            found.add("icc")
        elif marker == 0xE2 and body.startswith(b"MPF\x00"):
            found.add("mpf")
        elif marker == 0xED:
            found.add("iptc")
        elif marker == 0xFE:
            found.add("comment")
        elif (
            0xE0 <= marker <= 0xEF
            and not (marker == 0xE0 and body.startswith(b"JFIF\x00"))
            and not (marker == 0xEE and body.startswith(b"Adobe"))
        ):
            found.add(f"segment:APP{marker - 0xE0}")
        pos += 2 + length
    return found


def _png_items(data: bytes) -> set[str]:
    found: set[str] = set()
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword = body.split(b"\x00", 1)[0].decode("latin-1")
            found.add("xmp" if keyword == "XML:com.adobe.xmp" else f"text:{keyword}")
        elif kind == b"eXIf":
            found |= _exif_items(body)
        elif kind == b"iCCP":
            found.add("icc")
        elif kind not in _HARMLESS_PNG:
            found.add(f"chunk:{kind.decode('latin-1')}")
        pos += 12 + length
    return found


def _webp_items(data: bytes) -> set[str]:
    found: set[str] = set()
    pos = 12
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"EXIF":
            found |= _exif_items(body[6:] if body.startswith(b"Exif\x00\x00") else body)
        elif kind == b"XMP ":
            found.add("xmp")
        elif kind == b"ICCP":
            found.add("icc")
        elif kind not in _HARMLESS_WEBP:
            found.add(f"chunk:{kind.decode('latin-1')}")
        pos += 8 + length + (length & 1)
    return found


def _tiff_items(path: Path) -> set[str]:
    found: set[str] = set()
    with Image.open(path) as im:
        for tag in im.tag_v2:
            if tag == 34665:
                found.add("exif")
            elif tag == 34853:
                found.add("gps")
            elif tag == 700:
                found.add("xmp")
            elif tag == 34675:
                found.add("icc")
            elif tag == 33723:
                found.add("iptc")
            elif tag not in _HARMLESS_TIFF:
                found.add(f"tag:{tag}")
    return found


def metadata_report(path: str | Path) -> MetadataReport:
    """What metadata ``path`` carries (see the module docstring for the vocabulary)."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(b"\xff\xd8"):
        file_format, found = "JPEG", _jpeg_items(data)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        file_format, found = "PNG", _png_items(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        file_format, found = "WEBP", _webp_items(data)
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        file_format, found = "TIFF", _tiff_items(path)
    else:
        file_format, found = "other", set()
    found |= {f"signature:{name}" for name, signature in _SIGNATURES.items() if signature in data}
    return MetadataReport(path, file_format, tuple(sorted(found)))
