"""Outputs carry no metadata and appear atomically, even when the writer is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image
from test_io_craft import SECRET, XMP, save_with_metadata, thumbnail_jpeg

from refsd_trt.io import OutputError, clean_stale_temps, metadata_report, read_image, write_image
from refsd_trt.io.atomic import is_temp_name


@pytest.fixture(scope="module")
def photo(sample_images) -> np.ndarray:
    """A real photo with people (the first embedded sample), cropped to keep the format matrix fast."""
    return np.ascontiguousarray(sample_images[0][1][:400, :360])


@pytest.mark.parametrize("in_suffix", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize("out_suffix", [".jpg", ".png", ".webp", ".tif", ".bmp"])
def test_read_then_write_strips_all_metadata(tmp_path, photo, in_suffix, out_suffix):
    source = save_with_metadata(photo, tmp_path / f"in{in_suffix}")
    before = metadata_report(source)
    assert {"exif", "gps", "exif-thumbnail", "xmp", "icc"} <= set(before.found), before.found

    loaded = read_image(source)
    out = write_image(loaded.pixels, tmp_path / "out" / f"anon{out_suffix}")

    report = metadata_report(out)
    assert report.clean, report.found
    data = out.read_bytes()
    assert SECRET not in data and XMP not in data and thumbnail_jpeg() not in data
    with Image.open(out) as im:
        assert im.size == loaded.size == (photo.shape[1], photo.shape[0])
        exif = im.getexif()  # for TIFF this also lists the file's own structure tags
        assert not exif.get_ifd(ExifTags.IFD.GPSInfo) and not exif.get_ifd(ExifTags.IFD.Exif)
        assert 0x010E not in exif and "icc_profile" not in im.info and "xmp" not in im.info


def test_lossless_outputs_keep_pixels_exactly(tmp_path, photo):
    pixels = torch.from_numpy(photo.copy()).permute(2, 0, 1).contiguous()
    for suffix in (".png", ".bmp", ".tif"):
        out = write_image(pixels, tmp_path / f"x{suffix}")
        assert torch.equal(read_image(out).pixels, pixels)


def test_write_refuses_unknown_suffix_and_bad_tensors(tmp_path):
    good = torch.zeros((3, 8, 8), dtype=torch.uint8)
    with pytest.raises(OutputError, match=r"x\.gif: unsupported image suffix"):
        write_image(good, tmp_path / "x.gif")
    with pytest.raises(OutputError, match="expected a \\(3, H, W\\) uint8 tensor"):
        write_image(good.float(), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_failed_encode_leaves_no_file_and_no_temp(tmp_path, monkeypatch):
    final = tmp_path / "out.png"
    final.write_bytes(b"previous run's output")

    def broken_save(self, fp, format=None, **params):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OutputError, match="out.png: cannot write: No space left on device"):
        write_image(torch.zeros((3, 8, 8), dtype=torch.uint8), final)
    assert final.read_bytes() == b"previous run's output"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time, torch
    from refsd_trt.io import atomic, write_image
    def stall(path):  # the encoded bytes are in the temp file; the writer dies before the rename
        print("written", flush=True)
        time.sleep(120)
    atomic._fsync_path = stall
    write_image(torch.randint(0, 256, (3, 1500, 2000), dtype=torch.uint8), sys.argv[1])
    """
)


def test_writer_killed_mid_write_leaves_no_partial_output(tmp_path):
    final = tmp_path / "big.png"
    final.write_bytes(b"previous run's output")
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(final)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "written"
        temps = [p for p in tmp_path.iterdir() if is_temp_name(p.name)]
        assert len(temps) == 1 and temps[0].stat().st_size > 1_000_000
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert final.read_bytes() == b"previous run's output"  # readers never saw a partial file
    # The next run removes the dead writer's temporary file and nothing else.
    assert clean_stale_temps(tmp_path) == temps
    assert [p.name for p in tmp_path.iterdir()] == ["big.png"]


def test_clean_stale_temps_keeps_temps_of_live_writers(tmp_path):
    live = tmp_path / f".a.png.tmp-{os.getpid()}-0123456789ab.png"
    live.write_bytes(b"being written")
    user_file = tmp_path / ".notes.tmp-1-x"  # looks similar, is not ours
    user_file.write_bytes(b"keep")
    assert clean_stale_temps(tmp_path) == []
    assert live.exists() and user_file.exists()


def test_output_permissions_follow_umask(tmp_path):
    out = write_image(torch.zeros((3, 4, 4), dtype=torch.uint8), tmp_path / "p.png")
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
