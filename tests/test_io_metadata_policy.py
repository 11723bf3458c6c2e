"""--keep-metadata: outputs keep only the allow-listed EXIF groups asked for, never anything else."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image
from test_io_craft import SECRET, XMP, _ifd, srgb_icc, thumbnail_jpeg

from refsd_trt.io import MetadataPolicy, kept_exif, metadata_report, read_image, write_image
from refsd_trt.io.metadata import _HARMLESS_TIFF
from refsd_trt.io.metadata_policy import GROUP_TAGS

_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _UNDEFINED, _SRATIONAL = 1, 2, 3, 4, 5, 7, 10
EXIF, GPS, IFD1 = ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo, ExifTags.IFD.IFD1
LATITUDE = ((48, 1), (51, 1), (2980, 100))  # 48°51'29.80" N
LONGITUDE = ((2, 1), (17, 1), (4000, 100))  # 2°17'40.00" E
TIME_IFD0 = {0x0132: "2024:05:06 07:08:09"}
TIME_EXIF = {0x9003: "2024:05:06 07:08:09", 0x9004: "2024:05:06 07:08:10", 0x9011: "+02:00", 0x9291: "123"}
SERIAL, OWNER, MAKERNOTE, USERCOMMENT = 0xA431, 0xA430, 0x927C, 0x9286
# A TIFF output's own geometry and encoding tags (IFD0 is the image's IFD there); Orientation is not one.
TIFF_STRUCTURE = _HARMLESS_TIFF - {0x0112}


def _ascii(text: str | bytes) -> tuple[int, int, bytes]:
    data = (text.encode() if isinstance(text, str) else text) + b"\x00"
    return _ASCII, len(data), data


def _rationals(pairs, kind: int = _RATIONAL) -> tuple[int, int, bytes]:
    fmt = "<" + ("i" if kind == _SRATIONAL else "I") * 2
    return kind, len(pairs), b"".join(struct.pack(fmt, n, d) for n, d in pairs)


def _entries(tags: dict[int, tuple[int, int, bytes]]) -> list[tuple[int, int, int, bytes]]:
    return [(tag, kind, count, value) for tag, (kind, count, value) in tags.items()]


def rich_exif(orientation: int | None = None) -> bytes:
    """``Exif\\0\\0`` + TIFF with every kind of tag: time, GPS, camera and lens settings, and what must
    never survive (serial, owner, MakerNote, UserComment, description, IFD1 thumbnail)."""
    ifd0 = {
        0x010E: _ascii(SECRET),  # ImageDescription
        0x010F: _ascii("Canon"),
        0x0110: _ascii("Canon EOS R5"),
        0x013B: _ascii(SECRET),  # Artist
        **{tag: _ascii(value) for tag, value in TIME_IFD0.items()},
    }
    if orientation is not None:
        ifd0[0x0112] = (_SHORT, 1, struct.pack("<H", orientation))
    exif = {
        **{tag: _ascii(value) for tag, value in TIME_EXIF.items()},
        0x829A: _rationals([(1, 250)]),  # ExposureTime
        0x829D: _rationals([(28, 10)]),  # FNumber
        0x8827: (_SHORT, 1, struct.pack("<H", 400)),  # ISO
        0x920A: _rationals([(50, 1)]),  # FocalLength
        0x9204: _rationals([(-1, 3)], _SRATIONAL),  # ExposureBiasValue
        0xA434: _ascii("RF50mm F1.8 STM"),  # LensModel
        SERIAL: _ascii(SECRET),
        OWNER: _ascii(SECRET),
        MAKERNOTE: (_UNDEFINED, len(SECRET) + 8, b"MAKERNTE" + SECRET),
        USERCOMMENT: (_UNDEFINED, len(SECRET) + 8, b"ASCII\x00\x00\x00" + SECRET),
    }
    gps = {
        0: (_BYTE, 4, bytes([2, 3, 0, 0])),
        1: _ascii("N"),
        2: _rationals(LATITUDE),
        3: _ascii("E"),
        4: _rationals(LONGITUDE),
        5: (_BYTE, 1, b"\x00"),
        6: _rationals([(3550, 100)]),
        7: _rationals([(5, 1), (8, 1), (9, 1)]),
        27: (_UNDEFINED, len(SECRET) + 8, b"ASCII\x00\x00\x00" + SECRET),  # GPSProcessingMethod
        29: _ascii("2024:05:06"),
    }
    pointers = {EXIF: (_LONG, 1, b"\0" * 4), GPS: (_LONG, 1, b"\0" * 4)}
    exif_at = 8 + len(_ifd(_entries({**ifd0, **pointers}), 8))
    gps_at = exif_at + len(_ifd(_entries(exif), exif_at))
    ifd1_at = gps_at + len(_ifd(_entries(gps), gps_at))
    pointers = {EXIF: (_LONG, 1, struct.pack("<I", exif_at)), GPS: (_LONG, 1, struct.pack("<I", gps_at))}
    thumbnail = thumbnail_jpeg()

    def ifd1(at: int) -> dict[int, tuple[int, int, bytes]]:
        return {
            0x0103: (_SHORT, 1, struct.pack("<H", 6)),
            0x0201: (_LONG, 1, struct.pack("<I", at)),
            0x0202: (_LONG, 1, struct.pack("<I", len(thumbnail))),
        }

    thumb_at = ifd1_at + len(_ifd(_entries(ifd1(0)), ifd1_at))
    tiff = (
        b"II*\x00"
        + struct.pack("<I", 8)
        + _ifd(_entries({**ifd0, **pointers}), 8, ifd1_at)
        + _ifd(_entries(exif), exif_at)
        + _ifd(_entries(gps), gps_at)
        + _ifd(_entries(ifd1(thumb_at)), ifd1_at)
        + thumbnail
    )
    return b"Exif\x00\x00" + tiff


def make_source(path: Path, orientation: int | None = None) -> Path:
    """A photo-like image in ``path``'s format with the rich EXIF, XMP, ICC and a comment/text."""
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    exif = rich_exif(orientation)
    if path.suffix == ".jpg":
        im.save(path, exif=exif, xmp=XMP, icc_profile=srgb_icc(), comment=SECRET, quality=95)
    elif path.suffix == ".png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Author", SECRET.decode())
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        im.save(path, pnginfo=info, exif=exif, icc_profile=srgb_icc())
    elif path.suffix == ".webp":
        im.save(path, exif=exif, xmp=XMP, icc_profile=srgb_icc(), quality=95)
    else:
        raise ValueError(path.suffix)
    return path


@pytest.fixture(params=[".jpg", ".png", ".webp"])
def source(request, tmp_path) -> Path:
    path = make_source(tmp_path / f"in{request.param}")
    before = metadata_report(path)
    assert {"exif", "gps", "exif-thumbnail", "xmp", "icc"} <= set(before.found), before.found
    return path


OUT_SUFFIXES = [".jpg", ".png", ".webp", ".tif"]


def _anonymize(source: Path, out: Path, keep: str) -> Path:
    """What the runner does with a policy: read, (anonymize), write with the policy's EXIF."""
    policy = MetadataPolicy.parse(keep)
    return write_image(read_image(source).pixels, out, exif=policy.exif_from(source))


def _read_back(path: Path) -> tuple[dict[int, object], dict[int, object], dict[int, object], dict[int, object]]:
    """IFD0 without the TIFF container's own structure tags, EXIF IFD, GPS IFD, IFD1."""
    with Image.open(path) as im:
        exif = im.getexif()
        ifd0 = {k: v for k, v in exif.items() if k not in (EXIF, GPS) and k not in TIFF_STRUCTURE}
        return ifd0, dict(exif.get_ifd(EXIF)), dict(exif.get_ifd(GPS)), dict(exif.get_ifd(IFD1))


def _never_leaks(out: Path) -> None:
    data = out.read_bytes()
    assert SECRET not in data and XMP not in data and thumbnail_jpeg() not in data
    found = set(metadata_report(out).found)
    assert not found & {"exif-thumbnail", "xmp", "icc", "iptc", "comment", "mpf"}, found
    assert not any(item.startswith(("text:", "chunk:", "segment:")) for item in found), found
    ifd0, exif, _, ifd1 = _read_back(out)
    assert 0x0112 not in ifd0 and not ifd1
    assert not {SERIAL, OWNER, MAKERNOTE, USERCOMMENT} & set(exif)


@pytest.mark.parametrize("out_suffix", [*OUT_SUFFIXES, ".bmp"])
def test_default_keeps_nothing_and_writes_the_same_bytes(tmp_path, source, out_suffix):
    policy = MetadataPolicy.parse(None)
    assert policy == MetadataPolicy() == MetadataPolicy.parse("") == MetadataPolicy.parse("none")
    assert policy.exif_from(source) is None and policy.note_for(f"x{out_suffix}") is None
    pixels = read_image(source).pixels
    out = write_image(pixels, tmp_path / f"a{out_suffix}", exif=policy.exif_from(source))
    plain = write_image(pixels, tmp_path / f"b{out_suffix}")
    assert out.read_bytes() == plain.read_bytes()
    assert metadata_report(out).clean, metadata_report(out).found


@pytest.mark.parametrize("out_suffix", OUT_SUFFIXES)
def test_time_keeps_only_the_time_tags(tmp_path, source, out_suffix):
    out = _anonymize(source, tmp_path / f"out{out_suffix}", "time")
    ifd0, exif, gps, _ = _read_back(out)
    assert ifd0 == TIME_IFD0
    assert exif == TIME_EXIF
    assert not gps and "gps" not in metadata_report(out).found
    _never_leaks(out)


@pytest.mark.parametrize("out_suffix", OUT_SUFFIXES)
def test_gps_keeps_the_gps_ifd_values(tmp_path, source, out_suffix):
    out = _anonymize(source, tmp_path / f"out{out_suffix}", "gps")
    ifd0, exif, gps, _ = _read_back(out)
    assert "gps" in metadata_report(out).found
    assert not ifd0 and not exif  # no time, no camera, not even an empty EXIF IFD
    assert gps[0] == bytes([2, 3, 0, 0])
    assert gps[1] == "N" and [Fraction(v.numerator, v.denominator) for v in gps[2]] == [
        Fraction(n, d) for n, d in LATITUDE
    ]
    assert gps[3] == "E" and [float(v) for v in gps[4]] == [2.0, 17.0, 40.0]
    assert gps[5] == b"\x00" and float(gps[6]) == 35.5
    assert [float(v) for v in gps[7]] == [5.0, 8.0, 9.0] and gps[29] == "2024:05:06"
    assert 27 not in gps  # GPSProcessingMethod: free text, not kept
    _never_leaks(out)


@pytest.mark.parametrize("out_suffix", OUT_SUFFIXES)
def test_camera_keeps_make_model_and_exposure_not_the_serial(tmp_path, source, out_suffix):
    out = _anonymize(source, tmp_path / f"out{out_suffix}", "camera")
    ifd0, exif, gps, _ = _read_back(out)
    assert ifd0 == {0x010F: "Canon", 0x0110: "Canon EOS R5"}
    assert set(exif) == {0x829A, 0x829D, 0x8827, 0x920A, 0x9204, 0xA434}
    assert exif[0x829A] == Fraction(1, 250) and exif[0x829D] == Fraction(28, 10)
    assert exif[0x8827] == 400 and exif[0x920A] == 50 and exif[0x9204] == Fraction(-1, 3)
    assert exif[0xA434] == "RF50mm F1.8 STM"
    assert not gps
    _never_leaks(out)


@pytest.mark.parametrize("out_suffix", OUT_SUFFIXES)
def test_all_groups_never_thumbnail_makernote_xmp_or_orientation(tmp_path, out_suffix):
    source = make_source(tmp_path / "rotated.jpg", orientation=6)
    loaded = read_image(source)
    assert loaded.size == (48, 64)  # orientation 6 was applied to the pixels
    out = _anonymize(source, tmp_path / f"out{out_suffix}", "camera,gps,time")
    with Image.open(out) as im:
        assert im.size == (48, 64)
    ifd0, exif, gps, ifd1 = _read_back(out)
    assert ifd0 == {**TIME_IFD0, 0x010F: "Canon", 0x0110: "Canon EOS R5"}
    assert set(exif) == set(TIME_EXIF) | {0x829A, 0x829D, 0x8827, 0x920A, 0x9204, 0xA434}
    assert gps[2] == read_back_latitude(source) and not ifd1
    _never_leaks(out)


def read_back_latitude(path: Path) -> tuple:
    with Image.open(path) as im:
        return im.getexif().get_ifd(GPS)[2]


def test_kept_exif_is_a_fresh_allow_listed_exif(tmp_path):
    source = make_source(tmp_path / "in.jpg", orientation=3)
    exif = kept_exif(source, MetadataPolicy.parse("time,camera,gps"))
    allowed = {(ifd, tag) for entries in GROUP_TAGS.values() for ifd, tag, _ in entries}
    kept = {(0, tag) for tag in exif} | {
        (ifd, tag) for ifd in (EXIF, GPS) for tag in exif.get_ifd(ifd)
    }
    assert kept <= allowed and (0, 0x0112) not in kept
    assert (GPS, 2) in kept and (0, 0x010F) in kept and (EXIF, 0x9003) in kept
    assert kept_exif(source, MetadataPolicy()) is None
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert MetadataPolicy.parse("gps").exif_from(plain) is None  # nothing to keep: nothing written
    assert MetadataPolicy.parse("gps").exif_from(tmp_path / "missing.jpg") is None


def test_write_image_never_writes_orientation_or_a_thumbnail_whatever_it_is_given(tmp_path):
    source = make_source(tmp_path / "in.jpg", orientation=6)
    with Image.open(source) as im:
        everything = im.getexif()  # the raw source EXIF, IFD1 and all: not what a caller should pass
        assert everything[0x0112] == 6 and everything.get_ifd(IFD1)
    out = write_image(read_image(source).pixels, tmp_path / "out.jpg", exif=everything)
    ifd0, _, _, ifd1 = _read_back(out)
    assert 0x0112 not in ifd0 and not ifd1 and "exif-thumbnail" not in metadata_report(out).found
    assert thumbnail_jpeg() not in out.read_bytes()


def test_formats_without_exif_get_a_note_instead(tmp_path):
    policy = MetadataPolicy.parse("gps")
    assert policy.note_for("out/a.jpg") is None and policy.note_for("a.TIFF") is None
    assert "BMP outputs cannot carry EXIF" in policy.note_for("out/a.bmp")
    assert "MP4 outputs cannot carry EXIF" in policy.note_for("out/clip.mp4")
    source = make_source(tmp_path / "in.jpg")
    out = write_image(read_image(source).pixels, tmp_path / "out.bmp", exif=policy.exif_from(source))
    assert metadata_report(out).clean


def test_parse_names_groups_in_canonical_order():
    policy = MetadataPolicy.parse(" GPS, time ,gps")
    assert policy.groups == ("time", "gps") == MetadataPolicy.parse(["gps", "time"]).groups
    record = policy.to_dict()
    assert record["keep"] == ["time", "gps"]
    assert "GPSLatitude" in record["tags"] and "DateTimeOriginal" in record["tags"]
    assert "Make" not in record["tags"] and "BodySerialNumber" not in record["tags"]
    names = {name for entries in GROUP_TAGS.values() for _, _, name in entries}
    assert not names & {"Orientation", "MakerNote", "UserComment", "BodySerialNumber", "LensSerialNumber",
                        "CameraOwnerName", "Artist", "Copyright", "ImageDescription", "JPEGInterchangeFormat"}


@pytest.mark.parametrize("spec", ["time,location", "all", "thumbnail", "none,gps"])
def test_unknown_group_is_a_one_line_error_naming_the_allowed(spec):
    with pytest.raises(ValueError) as err:
        MetadataPolicy.parse(spec)
    message = str(err.value)
    assert "\n" not in message and "time, gps, camera" in message
    with pytest.raises(ValueError):
        MetadataPolicy(("xmp",))


def test_config_and_cli_validate_keep_metadata(tmp_path):
    from refsd_trt.cli import _run_config, build_parser
    from refsd_trt.config import RunConfig, load_config

    assert RunConfig().keep_metadata == ()
    assert RunConfig(keep_metadata=("gps", "time")).keep_metadata == ("time", "gps")
    assert RunConfig().merged({"keep_metadata": "camera"}).keep_metadata == ("camera",)
    with pytest.raises(ValueError, match="keep_metadata: unknown metadata group 'serial'"):
        RunConfig(keep_metadata=("serial",))
    toml = tmp_path / "run.toml"
    toml.write_text('keep_metadata = ["gps", "time"]\n')
    assert load_config(toml).keep_metadata == ("time", "gps")
    toml.write_text('keep_metadata = "exif"\n')
    with pytest.raises(ValueError, match="allowed are time, gps, camera"):
        load_config(toml)

    def parse(*flags: str) -> RunConfig:
        return _run_config(build_parser().parse_args(["anonymize", "in", "-o", "out", *flags]))

    assert parse().keep_metadata == ()
    assert parse("--keep-metadata", "gps,time").keep_metadata == ("time", "gps")
    toml.write_text('keep_metadata = ["gps"]\n')
    assert parse("--config", str(toml), "--keep-metadata", "none").keep_metadata == ()
    with pytest.raises(ValueError, match="unknown metadata group 'gps2'"):
        parse("--keep-metadata", "gps2")
