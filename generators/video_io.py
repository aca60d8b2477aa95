"""MP4 in and out, in-process, with PyAV (its wheels bundle FFmpeg with libx264; no system ffmpeg).

Invariants: clips are H.264 in yuv420p holding exactly the frames given (no resampling, no dropped
or duplicated frames); sizes must be even (checked up front, with a message that says so); the
same frames give the same bytes; ``frame_count`` counts decoded frames, so "the export has the sum
of the clips' frames" is a statement about the file, not about its metadata.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

from codirector.errors import BackendError


def _check_size(width: int, height: int) -> None:
    if width % 2 or height % 2:
        raise BackendError(
            f"video frames must have an even width and height for H.264 (yuv420p), got {width}x{height}",
            hint="use sizes divisible by 16, e.g. 512x288 or 832x480",
        )


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def write_mp4(frames: Iterable[np.ndarray], target: str | os.PathLike[str] | IO[bytes], fps: float) -> int:
    """Encode RGB uint8 frames (H, W, 3) into ``target`` (a path or a binary file); returns the count."""
    import av

    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise BackendError("cannot write a video with no frames")
    height, width = first.shape[:2]
    _check_size(width, height)
    n = 0
    with av.open(target if not isinstance(target, os.PathLike) else str(target), "w", format="mp4") as container:
        stream: Any = container.add_stream("libx264", rate=_rate(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Same frames, same bytes: x264's lookahead and multi-threading make its output vary from run to
        # run under CPU load (seen here: 2 variants in 60 encodes); ultrafast on one thread never did
        # (1,200 encodes under load). Replay and resume compare blobs, so this matters more than size.
        stream.options = {"crf": "18", "preset": "ultrafast", "threads": "1"}
        for frame in _chain(first, it):
            arr = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
            if arr.shape[:2] != (height, width):
                raise BackendError(f"frame {n} is {arr.shape[1]}x{arr.shape[0]}, the clip is {width}x{height}")
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    return n


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def encode_mp4(frames: Sequence[np.ndarray], fps: float) -> bytes:
    """MP4 bytes for RGB uint8 frames."""
    buf = io.BytesIO()
    write_mp4(frames, buf, fps)
    return buf.getvalue()


def _decode(source: Any) -> Iterator[np.ndarray]:
    import av

    try:
        with av.open(source, "r") as container:
            container.streams.video[0].thread_type = "AUTO"
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise BackendError(f"cannot decode the video: {e}", hint="the clip is damaged; `codirector verify` "
                           "checks every stored blob") from e


def read_frames(data: bytes) -> list[np.ndarray]:
    """Every frame of an MP4 given as bytes, as RGB uint8 arrays."""
    return list(_decode(io.BytesIO(data)))


def read_some_frames(data: bytes, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Only the frames at ``indices`` (decoding is sequential; the others are never converted to RGB)."""
    import av

    wanted = set(indices)
    out: dict[int, np.ndarray] = {}
    try:
        with av.open(io.BytesIO(data), "r") as container:
            container.streams.video[0].thread_type = "AUTO"  # decoding is deterministic; threads only help
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted:
                    out[i] = frame.to_ndarray(format="rgb24")
                    if len(out) == len(wanted):
                        break
    except av.error.FFmpegError as e:
        raise BackendError(f"cannot decode the video: {e}", hint="the clip is damaged; `codirector verify` "
                           "checks every stored blob") from e
    missing = sorted(wanted - set(out))
    if missing:
        raise BackendError(f"the clip has no frame {missing[0]} (it has {len(out) and max(out) + 1} frames)")
    return out


def read_frames_from(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Every frame of an MP4 file, decoded one at a time."""
    return _decode(str(path))


def frame_count(path: str | os.PathLike[str]) -> int:
    """Frames in a video file, counted by decoding it."""
    return sum(1 for _ in _decode(str(path)))


def frame_png(frame: np.ndarray) -> bytes:
    """A frame as lossless PNG: what a view cut from a clip stores (exactly that frame's pixels)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", compress_level=1)  # light: frames are many
    return buf.getvalue()


def frame_jpeg(frame: np.ndarray) -> bytes:
    """A frame as a model sees it (JPEG, quality 90: what vision APIs receive anyway)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def sample_indices(total: int, n: int) -> list[int]:
    """``n`` evenly spaced frame indices over ``total`` frames, first and last included."""
    if total <= 0:
        return []
    if n >= total:
        return list(range(total))
    if n == 1:
        return [total // 2]
    return sorted({round(i * (total - 1) / (n - 1)) for i in range(n)})


def concat_mp4(clips: Sequence[bytes], out: str | os.PathLike[str], fps: float) -> int:
    """Decode every clip and encode them, in order, as one MP4; returns the frames written.

    Clips of another size than the first are letterboxed to it (never stretched).
    """
    if not clips:
        raise BackendError("nothing to export: the branch has no completed shot")

    def frames() -> Iterator[np.ndarray]:
        size: tuple[int, int] | None = None
        for data in clips:
            for f in _decode(io.BytesIO(data)):
                if size is None:
                    size = (int(f.shape[0]), int(f.shape[1]))
                yield f if f.shape[:2] == size else _letterbox(f, size)

    tmp = Path(out).with_suffix(".partial.mp4")
    try:
        n = write_mp4(frames(), tmp, fps)
        os.replace(tmp, out)  # a crash mid-export never leaves a truncated file under the final name
    except BaseException:
        tmp.unlink(missing_ok=True)  # ... and a failed one leaves no file at all
        raise
    return n


def _letterbox(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    im = Image.fromarray(frame)
    im.thumbnail((w, h))
    canvas = Image.new("RGB", (w, h))
    canvas.paste(im, ((w - im.width) // 2, (h - im.height) // 2))
    return np.asarray(canvas)


def probe_mp4(data: bytes) -> tuple[int, float, int, int]:
    """(frames, fps, width, height) of an MP4 given as bytes, counting decoded frames; ``BackendError`` when
    the bytes are not a video (a provider that sent an error page instead of its file)."""
    import av

    try:
        with av.open(io.BytesIO(data), "r") as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
            frames = sum(1 for _ in container.decode(stream))
    except (av.error.FFmpegError, IndexError, ValueError) as e:
        raise BackendError(
            f"the downloaded clip is not a readable video ({len(data)} bytes, starts {data[:12]!r}): {e}",
            hint="the provider sent something else than its MP4; `codirector resume` fetches it again") from e
    if frames == 0:
        raise BackendError(f"the downloaded clip has no frames ({len(data)} bytes)")
    return frames, round(fps, 6), width, height
