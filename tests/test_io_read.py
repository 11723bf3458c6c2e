"""read_image: good, convertible and broken inputs; each refusal is one line naming the file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from test_io_craft import exif_block, png_header_only, srgb_icc

from refsd_trt.io import InputError, InputErrorKind, ReadLimits, input_file, read_image, write_image
from refsd_trt.samples import sample_image_paths

Kind = InputErrorKind


def _gradient(height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)


def _photo_bytes() -> bytes:
    return sample_image_paths()[0].read_bytes()


def _astronaut_bytes() -> bytes:
    return next(p for p in sample_image_paths() if p.suffix == ".png").read_bytes()


def _renamed_srgb_profile() -> bytes:
    """sRGB under another name: no other RGB profile exists offline, and the name decides the path."""
    return srgb_icc().replace("sRGB built-in".encode("utf-16-be"), "Wide built-in".encode("utf-16-be"))


def _animated_gif(path: Path) -> None:
    frames = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (0, 120, 240)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)


def _multipage_tiff(path: Path) -> None:
    pages = [Image.fromarray(_gradient()), Image.fromarray(_gradient()[::-1].copy())]
    pages[0].save(path, save_all=True, append_images=pages[1:])


def _rgba_png(path: Path) -> None:
    rgba = np.dstack([_gradient(), np.full((48, 64), 255, np.uint8)])
    rgba[:, :32, 3] = 0  # left half transparent, hiding red pixels
    rgba[:, :32, :3] = (255, 0, 0)
    Image.fromarray(rgba, mode="RGBA").save(path)


# file name -> (builder, the refusal it must get)
BROKEN: dict[str, tuple[Callable[[Path], object], Kind]] = {
    "truncated.jpg": (lambda p: p.write_bytes(_photo_bytes()[: len(_photo_bytes()) // 2]), Kind.CORRUPT),
    "truncated.png": (
        lambda p: p.write_bytes(_astronaut_bytes()[: len(_astronaut_bytes()) // 2]),
        Kind.CORRUPT,
    ),
    "zero.jpg": (lambda p: p.write_bytes(b""), Kind.EMPTY),
    "text.jpg": (lambda p: p.write_text("this is not a picture\n"), Kind.NOT_AN_IMAGE),
    "postscript.jpg": (  # Pillow's EPS plugin would hand this to Ghostscript: never offered to it
        lambda p: p.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
        Kind.NOT_AN_IMAGE,
    ),
    "bomb.png": (lambda p: png_header_only(p, 50_000, 50_000), Kind.DECOMPRESSION_BOMB),
    "long.png": (lambda p: png_header_only(p, 40_000, 100), Kind.TOO_LARGE),
    "animated.gif": (_animated_gif, Kind.ANIMATED),
    "pages.tif": (_multipage_tiff, Kind.ANIMATED),
    "float.tif": (
        lambda p: Image.fromarray(_gradient()[..., 0].astype(np.float32)).save(p),
        Kind.UNSUPPORTED,
    ),
}
# file name -> (builder, fragments of the notes it must load with)
CONVERTIBLE: dict[str, tuple[Callable[[Path], object], list[str]]] = {
    "good.jpg": (lambda p: p.write_bytes(_photo_bytes()), []),
    "gray16.png": (
        lambda p: cv2.imwrite(str(p), (_gradient()[..., 0].astype(np.uint16) * 257)),
        ["16-bit greyscale", "greyscale"],
    ),
    "rgb16.png": (lambda p: cv2.imwrite(str(p), _gradient().astype(np.uint16) * 257), ["16-bit colour"]),
    "cmyk.jpg": (lambda p: Image.fromarray(_gradient()).convert("CMYK").save(p), ["CMYK converted"]),
    "rgba.png": (_rgba_png, ["alpha channel composited over white and dropped (50.0% of pixels not opaque)"]),
    "gray.png": (lambda p: Image.fromarray(_gradient()[..., 1]).save(p), ["greyscale converted"]),
    "palette.gif": (lambda p: Image.fromarray(_gradient()).convert("P").save(p), ["palette image converted"]),
    "renamed-profile.png": (  # an RGB profile not named sRGB goes through littlecms to sRGB
        lambda p: Image.fromarray(_gradient()).save(p, icc_profile=_renamed_srgb_profile()),
        ["RGB pixels converted from ICC profile 'Wide built-in' to sRGB"],
    ),
    "broken-profile.jpg": (
        lambda p: Image.fromarray(_gradient()).save(p, icc_profile=b"not a profile at all"),
        ["embedded ICC profile unreadable"],
    ),
    "damaged-exif.jpg": (
        lambda p: Image.fromarray(_gradient()).save(
            p, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12"
        ),
        ["decoder warning: Corrupt EXIF data"],
    ),
    "mpo.jpg": (
        lambda p: Image.fromarray(_gradient()).save(
            p, format="MPO", save_all=True, append_images=[Image.new("RGB", (8, 8))]
        ),
        ["MPO with 2 pictures"],
    ),
}


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    for name, (build, _expected) in {**BROKEN, **CONVERTIBLE}.items():
        build(tmp_path / name)
    return tmp_path


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in folder.iterdir()
    }


def test_mixed_folder_refuses_broken_loads_the_rest_and_touches_nothing(mixed_folder):
    before = _snapshot(mixed_folder)
    for name, (_build, kind) in BROKEN.items():
        with pytest.raises(InputError) as caught:
            read_image(mixed_folder / name)
        message = str(caught.value)
        assert caught.value.kind is kind, message
        assert message.startswith(f"{mixed_folder / name}: ") and "\n" not in message, message
    for name, (_build, expected_notes) in CONVERTIBLE.items():
        loaded = read_image(mixed_folder / name)
        assert loaded.pixels.dtype == torch.uint8 and loaded.pixels.shape[0] == 3
        for fragment in expected_notes:
            assert any(fragment in note for note in loaded.notes), (name, loaded.notes)
        if not expected_notes:
            assert loaded.notes == []
        assert loaded.sha256 == before[name][0]
    assert _snapshot(mixed_folder) == before  # byte-identical, mtimes too


def test_conversions_give_the_expected_pixels(mixed_folder):
    gray16 = read_image(mixed_folder / "gray16.png").pixels
    assert torch.equal(gray16[0], torch.from_numpy(_gradient()[..., 0].copy())) and torch.equal(
        gray16[0], gray16[2]
    )
    rgba = read_image(mixed_folder / "rgba.png").pixels
    assert (rgba[:, :, :32] == 255).all(), (
        "transparent pixels must show the white background, not what they hid"
    )
    assert torch.equal(rgba[:, :, 32:], torch.from_numpy(_gradient()).permute(2, 0, 1)[:, :, 32:])
    through_profile = read_image(mixed_folder / "renamed-profile.png").pixels.int()
    assert (through_profile - torch.from_numpy(_gradient()).permute(2, 0, 1).int()).abs().max() <= 2


def test_missing_directory_and_permission_denied_are_one_line_each(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"nope\.jpg: file not found$") as missing:
        read_image(tmp_path / "nope.jpg")
    assert missing.value.kind is Kind.MISSING
    with pytest.raises(InputError, match="is a directory$"):
        read_image(tmp_path)
    (tmp_path / "locked.jpg").write_bytes(_photo_bytes())

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(input_file, "open", denied, raising=False)  # chmod 000 means nothing to root
    with pytest.raises(InputError, match=r"locked\.jpg: permission denied$"):
        read_image(tmp_path / "locked.jpg")


def test_limits_are_configurable(tmp_path):
    photo = sample_image_paths()[0]
    with pytest.raises(InputError, match="decompression bomb") as bomb:
        read_image(photo, ReadLimits(max_pixels=100_000))
    assert bomb.value.kind is Kind.DECOMPRESSION_BOMB
    with pytest.raises(InputError, match="above the limit of 500 px") as large:
        read_image(photo, ReadLimits(max_side=500))
    assert large.value.kind is Kind.TOO_LARGE


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_applied_and_kept_through_write(tmp_path, orientation):
    stored = np.zeros((40, 60, 3), np.uint8)  # landscape as stored, red block in the top-left corner
    stored[:16, :16] = (255, 0, 0)
    source = tmp_path / "o.jpg"
    Image.fromarray(stored).save(source, exif=exif_block(orientation=orientation, gps=False), quality=95)
    loaded = read_image(source)
    assert loaded.original_size == (60, 40)
    expected_size = (40, 60) if orientation in (6, 8) else (60, 40)
    assert loaded.size == expected_size
    # Where the stored top-left corner must end up once upright.
    corner = {1: (0, 0), 3: (1, 1), 6: (0, 1), 8: (1, 0)}[orientation]  # (bottom?, right?)
    height, width = loaded.pixels.shape[1:]
    rows = slice(height - 8, height) if corner[0] else slice(0, 8)
    cols = slice(width - 8, width) if corner[1] else slice(0, 8)
    assert (
        loaded.pixels[0, rows, cols].float().mean() > 200 and loaded.pixels[1, rows, cols].float().mean() < 60
    )
    assert (f"EXIF orientation {orientation} applied" in loaded.notes) == (orientation != 1)
    out = write_image(loaded.pixels, tmp_path / "out.jpg")
    with Image.open(out) as written:
        assert written.size == expected_size and 0x0112 not in written.getexif()


def test_real_photos_load_with_their_hash_and_size():
    for path in sample_image_paths():
        loaded = read_image(path)
        with Image.open(path) as im:
            assert loaded.size == im.size and loaded.format == im.format
        assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert loaded.pixels.is_contiguous() and loaded.pixels.shape == (3, im.size[1], im.size[0])


def test_refusals_survive_ultralytics_patching_pillow(tmp_path):
    # Importing ultralytics (export time, maybe in the same process) wraps PIL.Image.open so that
    # an unidentified file triggers a HEIF plugin install; the reader must still just refuse it.
    import importlib

    from refsd_trt.export.ultralytics_offline import yolo_class

    yolo_class()
    importlib.import_module("ultralytics.utils.patches")
    path = tmp_path / "text.jpg"
    path.write_text("not an image")
    with pytest.raises(InputError) as caught:
        read_image(path)
    assert caught.value.kind is InputErrorKind.NOT_AN_IMAGE
