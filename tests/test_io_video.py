"""Video frames in and out: round trip, refusals, atomic .mp4 output."""

from __future__ import annotations

import pytest
import torch

from refsd_trt.io import (
    InputError,
    InputErrorKind,
    OutputError,
    VideoWriter,
    iter_video_frames,
    metadata_report,
)


def _frames(count: int, height: int, width: int) -> list[torch.Tensor]:
    """Distinct frames: a bright square moving right on a coloured background."""
    frames = []
    for i in range(count):
        frame = torch.zeros((3, height, width), dtype=torch.uint8)
        frame[0] = 40 * i
        frame[2] = 200
        frame[:, 8:24, 4 + 8 * i : 20 + 8 * i] = 255
        frames.append(frame)
    return frames


@pytest.mark.parametrize("size", [(64, 48), (65, 49)])
def test_round_trip_keeps_count_size_fps_and_content(tmp_path, size):
    width, height = size
    written = _frames(5, height, width)
    out = tmp_path / "sub" / "clip.mp4"
    with VideoWriter(out, fps=12.0, size=(width, height)) as writer:
        for frame in written:
            writer.write(frame)
    assert [p.name for p in out.parent.iterdir()] == ["clip.mp4"]

    stored_width, stored_height = width // 2 * 2, height // 2 * 2  # the codec stores even sizes only
    assert writer.stored_size == (stored_width, stored_height) and len(writer.notes) == width % 2

    before = (out.read_bytes(), out.stat().st_mtime_ns)
    with iter_video_frames(out) as video:
        assert (video.info.width, video.info.height, video.info.fps) == (stored_width, stored_height, 12.0)
        read = list(video)
    assert video.frames_read == len(read) == 5
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before  # reading never touches the input
    for original, decoded in zip(written, read):
        assert decoded.shape == (3, stored_height, stored_width) and decoded.dtype == torch.uint8
        cropped = original[:, :stored_height, :stored_width].float()
        assert (decoded.float() - cropped).abs().mean() < 12  # lossy codec, same picture, RGB order
    assert metadata_report(out).found == ()


def test_failed_video_write_leaves_no_file(tmp_path):
    out = tmp_path / "clip.mp4"
    with (
        pytest.raises(OutputError, match=r"frame 1 is \(3, 10, 10\)"),
        VideoWriter(out, 10, (32, 24)) as writer,
    ):
        writer.write(_frames(1, 24, 32)[0])
        writer.write(torch.zeros((3, 10, 10), dtype=torch.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match=r"clip\.avi: video outputs must end in \.mp4"):
        VideoWriter(tmp_path / "clip.avi", fps=10, size=(32, 24))


def test_bad_videos_are_refused_with_one_line(tmp_path):
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "empty.mov").write_bytes(b"")
    cases = {
        "text.mp4": InputErrorKind.NOT_A_VIDEO,
        "empty.mov": InputErrorKind.EMPTY,
        "gone.mp4": InputErrorKind.MISSING,
    }
    for name, kind in cases.items():
        with pytest.raises(InputError) as caught:
            iter_video_frames(tmp_path / name)
        assert caught.value.kind is kind and str(caught.value).startswith(str(tmp_path / name))
