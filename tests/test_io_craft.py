"""Builders for the awkward files the io tests need (EXIF with GPS and a thumbnail, bombs, 16-bit...).

EXIF is assembled by hand with ``struct`` because Pillow cannot write an IFD1 thumbnail and piexif
is not a dependency. The tests in this module check that the builders make what they claim, read
back by Pillow, so the stripping tests elsewhere start from real metadata.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageCms

SECRET = b"SECRET-SERIAL-4711"  # put in EXIF, XMP, comments and text chunks; must never reach an output
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description creator="' + SECRET + b'"/></x:xmpmeta>'
_ASCII, _SHORT, _LONG, _RATIONAL = 2, 3, 4, 5


def _ifd(entries: list[tuple[int, int, int, bytes]], offset: int, next_offset: int = 0) -> bytes:
    """One little-endian IFD placed at ``offset``, followed by its values longer than 4 bytes."""
    data_at = offset + 2 + 12 * len(entries) + 4
    head, data = struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in sorted(entries):
        if len(value) <= 4:
            head += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")
        else:
            head += struct.pack("<HHII", tag, kind, count, data_at + len(data))
            data += value + b"\x00" * (len(value) % 2)
    return head + struct.pack("<I", next_offset) + data


def thumbnail_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 40)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def exif_block(orientation: int | None = None, gps: bool = True, thumbnail: bytes | None = None) -> bytes:
    """``Exif\\0\\0`` + TIFF: IFD0 (description with SECRET, orientation, GPS pointer), GPS IFD, IFD1."""
    description = SECRET + b"\x00"
    ifd0 = [(0x010E, _ASCII, len(description), description)]
    if orientation is not None:
        ifd0.append((0x0112, _SHORT, 1, struct.pack("<H", orientation)))
    placeholder = [*ifd0, (0x8825, _LONG, 1, b"\x00" * 4)] if gps else ifd0
    gps_at = 8 + len(_ifd(placeholder, 8))
    degrees = struct.pack("<6I", 48, 1, 51, 1, 2980, 100)  # 48°51'29.80"
    gps_ifd = (
        _ifd(
            [
                (1, _ASCII, 2, b"N\x00"),
                (2, _RATIONAL, 3, degrees),
                (3, _ASCII, 2, b"E\x00"),
                (4, _RATIONAL, 3, degrees),
            ],
            gps_at,
        )
        if gps
        else b""
    )
    ifd1_at = gps_at + len(gps_ifd)
    ifd1 = b""
    if thumbnail is not None:
        entries = lambda at: [
            (0x0103, _SHORT, 1, struct.pack("<H", 6)),
            (0x0201, _LONG, 1, struct.pack("<I", at)),
            (0x0202, _LONG, 1, struct.pack("<I", len(thumbnail))),
        ]
        thumb_at = ifd1_at + len(_ifd(entries(0), ifd1_at))
        ifd1 = _ifd(entries(thumb_at), ifd1_at) + thumbnail
    if gps:
        ifd0 = [*ifd0, (0x8825, _LONG, 1, struct.pack("<I", gps_at))]
    tiff = b"II*\x00" + struct.pack("<I", 8) + _ifd(ifd0, 8, ifd1_at if thumbnail else 0) + gps_ifd + ifd1
    return b"Exif\x00\x00" + tiff


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def save_with_metadata(pixels: np.ndarray, path: Path) -> Path:
    """Save as JPEG, PNG or WebP (by suffix) with EXIF GPS + thumbnail, XMP, ICC and a comment/text."""
    im = Image.fromarray(pixels)
    exif = exif_block(thumbnail=thumbnail_jpeg())
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        im.save(path, exif=exif, xmp=XMP, icc_profile=srgb_icc(), comment=SECRET, quality=95)
    elif suffix == ".png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Author", SECRET.decode())
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        im.save(path, pnginfo=info, exif=exif, icc_profile=srgb_icc())
    elif suffix == ".webp":
        im.save(path, exif=exif, xmp=XMP, icc_profile=srgb_icc(), quality=95)
    else:
        raise ValueError(suffix)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` RGB with almost no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = (
        _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_exif_builder_makes_gps_and_thumbnail_pillow_can_read(tmp_path):
    path = tmp_path / "meta.jpg"
    save_with_metadata(np.full((40, 60, 3), 90, np.uint8), path)
    with Image.open(path) as im:
        exif = im.getexif()
        assert exif[0x010E] == SECRET.decode()
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        assert gps[1] == "N" and len(gps[2]) == 3
        ifd1 = exif.get_ifd(ExifTags.IFD.IFD1)
        assert ifd1[0x0202] == len(thumbnail_jpeg())
        assert im.info["xmp"] == XMP and im.info["icc_profile"] == srgb_icc()
    assert thumbnail_jpeg() in path.read_bytes()


def test_png_header_only_claims_its_size(tmp_path):
    with Image.open(png_header_only(tmp_path / "h.png", 300, 200)) as im:
        assert im.size == (300, 200)
