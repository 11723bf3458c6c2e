"""Read video frames as RGB tensors and write them back as an .mp4, atomically.

Audio is dropped: OpenCV reads and writes pictures only, and an audio track can carry voices,
names and places, so a pseudonymized video without it is the private choice. Container metadata
(creation time, GPS ``©xyz`` atoms, camera model) is not copied either: outputs are new files made
from pixels. OpenCV applies the rotation flag of phone videos while decoding, so frames are upright
and their size is taken from the first decoded frame, not from the container header. Frames are
written at a constant rate; variable-frame-rate sources play back at their average rate.

Both directions stream: ``VideoFrames`` decodes one frame per step of the iteration (only the first,
read up front for the size, is held until asked for) and ``VideoWriter.write`` encodes each frame as
it comes, so memory does not grow with a video's length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
import torch

from refsd_trt.io.atomic import AtomicOutput
from refsd_trt.io.errors import InputError, InputErrorKind, OutputError
from refsd_trt.io.image_read import DEFAULT_LIMITS, ReadLimits
from refsd_trt.io.input_file import open_input

# MPEG-4 Part 2: the one encoder opencv-python-headless ships that works without extra libraries
# (its H.264 "avc1" needs an encoder the wheel does not include).
_FOURCC = "mp4v"
_DEFAULT_FPS = 25.0


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float  # from the container; _DEFAULT_FPS when it gives none
    frame_count: int  # the container's estimate, -1 if unknown; count frames read for the truth


def _rgb_tensor(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).contiguous()


class VideoFrames:
    """Iterate over a video's frames as (3, H, W) uint8 RGB tensors; ``info`` is known up front.

    The capture is released when iteration ends, on ``close()`` or when leaving a ``with`` block.
    ``frames_read`` counts the frames delivered so far.
    """

    def __init__(self, path: str | Path, limits: ReadLimits = DEFAULT_LIMITS) -> None:
        self.path = Path(path)
        open_input(self.path).close()  # missing / permission / empty get their own clear line
        self._capture = cv2.VideoCapture(str(self.path))
        ok, first = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok:
            self._capture.release()
            raise InputError(
                self.path, InputErrorKind.NOT_A_VIDEO, "not a readable video (no frame could be decoded)"
            )
        height, width = first.shape[:2]
        if width * height > limits.max_pixels or max(width, height) > limits.max_side:
            self._capture.release()
            raise InputError(
                self.path,
                InputErrorKind.TOO_LARGE,
                f"video frames of {width}x{height} px exceed the read limits",
            )
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.info = VideoInfo(
            width, height, fps if math.isfinite(fps) and fps > 0 else _DEFAULT_FPS, count if count > 0 else -1
        )
        self._first: np.ndarray | None = first
        self.frames_read = 0
        self.skipped: list[int] = []  # frames ``with_gaps`` found the decoder skipped

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            if self._first is not None:
                frame, self._first = self._first, None
            else:
                ok, frame = self._capture.read()
                if not ok:
                    self.close()
                    return
            self.frames_read += 1
            yield _rgb_tensor(frame)

    def with_gaps(self) -> Iterator[torch.Tensor | None]:
        """Like iterating, but with None in the place of each frame the decoder skipped: OpenCV
        conceals an undecodable frame by leaving it out, which its timestamps show (the next frame's
        is more than one frame period later). ``skipped`` lists those frames' indices."""
        period_ms = 1000.0 / self.info.fps
        position = 0
        for frame in self:
            stamp = self._capture.get(cv2.CAP_PROP_POS_MSEC) if position else 0.0
            expected = round(stamp / period_ms) if math.isfinite(stamp) and stamp > 0 else position
            while position < expected:
                self.skipped.append(position)
                position += 1
                yield None
            position += 1
            yield frame

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def iter_video_frames(path: str | Path, limits: ReadLimits = DEFAULT_LIMITS) -> VideoFrames:
    """Open ``path`` for reading (raises ``InputError`` at once if it cannot be decoded)."""
    return VideoFrames(path, limits)


class VideoWriter:
    """Write (3, H, W) uint8 RGB frames to an .mp4 that appears at ``path`` only when complete.

    Use as a context manager: a normal exit commits the file, an exception discards it. Every frame
    must have the ``size`` (width, height) given here. The codec stores even sizes only, so an odd
    width or height loses its last column or row (``stored_size``, and a line in ``notes``): pixels
    are removed, never invented. OpenCV would do the same crop silently.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise OutputError(self.path, f"video outputs must end in .mp4 (the {_FOURCC} codec's container)")
        self.size = size
        self.stored_size = (size[0] - size[0] % 2, size[1] - size[1] % 2)
        stored = f"{self.stored_size[0]}x{self.stored_size[1]}"
        self.notes = (
            []
            if self.stored_size == size
            else [f"odd frame size {size[0]}x{size[1]} stored as {stored} (cropped)"]
        )
        self._output = AtomicOutput(self.path)
        self._writer = cv2.VideoWriter(
            str(self._output.temp), cv2.VideoWriter_fourcc(*_FOURCC), fps, self.stored_size
        )
        if not self._writer.isOpened():
            self._output.discard()
            raise OutputError(
                self.path, f"OpenCV cannot open a {_FOURCC} writer for {size[0]}x{size[1]} at {fps} fps"
            )
        self.frames_written = 0

    def write(self, frame: torch.Tensor) -> None:
        expected = (3, self.size[1], self.size[0])
        if frame.dtype != torch.uint8 or tuple(frame.shape) != expected:
            raise OutputError(
                self.path,
                f"frame {self.frames_written} is {tuple(frame.shape)} {frame.dtype}, expected {expected} uint8",
            )
        width, height = self.stored_size
        bgr = np.ascontiguousarray(frame.detach().to("cpu").permute(1, 2, 0).numpy()[:height, :width, ::-1])
        self._writer.write(bgr)
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file and move it into place."""
        self._writer.release()
        if self.frames_written == 0:
            self._output.discard()
            raise OutputError(self.path, "no frames were written")
        return self._output.commit()

    def discard(self) -> None:
        self._writer.release()
        self._output.discard()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
