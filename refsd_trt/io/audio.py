"""A video's audio: dropped by default (it can carry voices, names and places), copied on request.

The anonymized pictures are encoded by OpenCV (``VideoWriter``), which writes no audio; with
``keep_audio`` the audio stream of the source is then muxed next to them with PyAV (FFmpeg's
libraries, a dependency of the tracker's detection records): copied as it is where an .mp4 can hold
its codec, else re-encoded to AAC. Nothing else of the source's container is carried over: no
metadata (creation time, location atoms, device names, titles), no subtitle or data streams.
"""

from __future__ import annotations

from pathlib import Path

from refsd_trt.io.atomic import AtomicOutput
from refsd_trt.io.errors import OutputError

# Audio codecs an .mp4 holds as they are; anything else is re-encoded to AAC.
_MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})


def audio_streams(path: str | Path) -> int:
    """How many audio streams the container at ``path`` holds (0 where PyAV cannot open it)."""
    import av

    try:
        with av.open(str(path)) as container:
            return len(container.streams.audio)
    except (av.error.FFmpegError, OSError):
        return 0


def add_audio(video: str | Path, source: str | Path) -> str:
    """Replace the .mp4 at ``video`` (pictures only) by one that also holds ``source``'s first audio
    stream, atomically; the container's metadata stays empty. Returns a note for the manifest."""
    import av

    video = Path(video)
    output = AtomicOutput(video)
    try:
        with av.open(str(source)) as src, av.open(str(video)) as pictures:
            if not src.streams.audio:
                output.discard()
                return "no audio track in the input"
            audio_in, video_in = src.streams.audio[0], pictures.streams.video[0]
            with av.open(str(output.temp), "w", format="mp4") as out:
                video_out = out.add_stream_from_template(video_in)
                copy = audio_in.codec_context.name in _MP4_AUDIO
                if copy:
                    audio_out = out.add_stream_from_template(audio_in)
                else:
                    audio_out = out.add_stream("aac", rate=audio_in.codec_context.sample_rate or 48000)
                for packet in pictures.demux(video_in):
                    if packet.dts is not None:
                        packet.stream = video_out
                        out.mux(packet)
                if copy:
                    for packet in src.demux(audio_in):
                        if packet.dts is not None:
                            packet.stream = audio_out
                            out.mux(packet)
                else:
                    for frame in src.decode(audio_in):
                        frame.pts = None
                        out.mux(audio_out.encode(frame))
                    out.mux(audio_out.encode(None))
    except Exception as exc:
        output.discard()
        raise OutputError(video, f"audio could not be copied: {type(exc).__name__}: {exc}") from exc
    output.commit()
    return "audio kept (keep_audio): copied from the input" if copy else "audio kept (keep_audio): re-encoded to AAC"
