"""Frame access to a user's local copy of a video, for the frames a chunk's labels point at.

Labels are timed in the original video; the local copy can have another frame rate, so frames are found by the
local file's own timestamps (`frames_at_times`, PyAV; OpenCV's CAP_PROP_POS_MSEC where PyAV is missing).
`read_frames` (by frame number) is kept for callers that already know the frame numbers.

`VideoWriter` (and `write_video` over it) is the project's one way of writing video: the sample data, the
simulator's session recordings, the synthetic overlay videos and the e2e recordings all go through it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av  # the [data] extra's PyAV: frame timestamps, and videos read from object storage
import cv2
import numpy as np


class VideoError(ValueError):
    """A video is missing, unreadable or shorter than its labels; the message names the file."""


def video_fps(path: str | Path) -> float:
    cap = _open(path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    if not fps or not np.isfinite(fps) or fps <= 0:
        raise VideoError(f"{path}: the container reports no frame rate ({fps!r})")
    return float(fps)


def _open(path: str | Path) -> cv2.VideoCapture:
    if not Path(path).is_file():
        raise VideoError(f"{path}: video file missing")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: OpenCV cannot open the video (corrupt or unsupported container/codec)")
    return cap


def read_frames(path: str | Path, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB uint8 [H, W, 3]) for each wanted frame index (ascending), decoding the video once in order.

    Frames between wanted ones are grabbed without conversion. Stops early where the video ends; the caller
    counts the frames it did not get.
    """
    cap = _open(path)
    try:
        pos, frame = 0, None
        for idx in indices:
            if idx < pos - 1:
                raise ValueError(f"read_frames({path}): indices must ascend, got {idx} after {pos - 1}")
            if idx == pos - 1 and frame is not None:  # the same frame again (a video slower than its labels)
                yield idx, frame
                continue
            while pos < idx:
                if not cap.grab():
                    return
                pos += 1
            ok, bgr = cap.read()
            if not ok:
                return
            pos += 1
            frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield idx, frame
    finally:
        cap.release()


# ---------------------------------------------------------------------------------------------------------------
# Frames by time: labels are timed in the original video, and a local copy may have another frame rate.


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about a local copy before it reads frames."""

    fps: float
    width: int
    height: int
    duration_s: float


def probe_video(path: str) -> VideoInfo:
    """Frame rate, size and duration from the container's header: OpenCV for local files, PyAV for object-store
    paths (read in byte ranges through Beam's FileSystems)."""
    if "://" not in str(path):
        cap = _open(path)
        try:
            fps = cap.get(cv2.CAP_PROP_FPS)
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        finally:
            cap.release()
        if not fps or not np.isfinite(fps) or fps <= 0:
            raise VideoError(f"{path}: the container reports no frame rate ({fps!r})")
        return VideoInfo(float(fps), w, h, float(n) / fps)
    with _av_open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate or rate <= 0:
            raise VideoError(f"{path}: the container reports no frame rate ({rate!r})")
        duration = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / 1e6
        return VideoInfo(float(rate), stream.codec_context.width, stream.codec_context.height, duration)


def _av_open(path: str):
    """A PyAV container on a local file or, through Beam's FileSystems, on an object-store path (read in ranges)."""
    if "://" not in str(path) and not Path(path).is_file():
        raise VideoError(f"{path}: video file missing")
    try:
        if "://" in str(path):
            from nitrogen_jax.data.pipeline_io import open_read

            container = av.open(open_read(path))
        else:
            container = av.open(str(path))
        if not container.streams.video:
            container.close()
            raise VideoError(f"{path}: no video stream")
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"{path}: PyAV cannot open the video (corrupt or unsupported container/codec: {e})") from None
    return container


def _timed_frames_av(path: str, start_s: float) -> Iterator[tuple[float, Callable[[], np.ndarray]]]:
    """(seconds since the first frame, RGB getter) in presentation order, from the keyframe at or before start_s."""
    with _av_open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.start_time or 0
        if start_s > 0:  # the restart point of a time range: no decoding from the start of a long video
            container.seek(base + int(start_s / stream.time_base), stream=stream, backward=True, any_frame=False)
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                yield float((frame.pts - base) * stream.time_base), functools.partial(frame.to_ndarray, format="rgb24")
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: decoding failed ({e})") from None


def _timed_frames_cv2(path: str, start_s: float) -> Iterator[tuple[float, Callable[[], np.ndarray]]]:
    """The OpenCV fallback: CAP_PROP_POS_MSEC after a read is the time of the frame just read (an approximate
    seek lands up to a second early)."""
    cap = _open(path)
    try:
        if start_s > 0:
            cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, start_s * 1000 - 1000))
        while True:  # retrieved at once: the frame is gone after the next grab, when the caller decides
            ok, bgr = cap.read()
            if not ok:
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield cap.get(cv2.CAP_PROP_POS_MSEC) / 1000, functools.partial(np.asarray, rgb)
    finally:
        cap.release()


def frames_at_times(
    path: str, times: np.ndarray, fps: float, backend: str = "auto"
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(position in `times`, local frame number, RGB frame) for each wanted time, ascending, in one decoding pass.

    The frame for time t is the one on screen at t: the last frame whose own timestamp is <= t (times are seconds
    from the video's first frame, so a 30 fps copy serves 60 fps labels with every frame twice). The frame number
    is the timestamp times `fps`, rounded. Stops where the video ends (after the last frame's display interval);
    the caller counts the times it did not get.
    """
    times = np.asarray(times, np.float64)
    if not len(times):
        return
    if np.any(np.diff(times) < 0):
        raise ValueError(f"frames_at_times({path}): times must ascend")
    use_av = backend in ("av", "auto")
    source = (_timed_frames_av if use_av else _timed_frames_cv2)(path, float(times[0]))
    eps, k = 1e-6, 0
    prev: tuple[float, Callable[[], np.ndarray]] | None = None
    cached: np.ndarray | None = None

    def emit(upto: float) -> Iterator[tuple[int, int, np.ndarray]]:
        nonlocal k, cached
        assert prev is not None
        while k < len(times) and times[k] < upto - eps:
            if cached is None:
                cached = prev[1]()
            yield k, int(round(prev[0] * fps)), cached
            k += 1

    for t, getter in source:
        if prev is not None:
            yield from emit(t)
        elif times[k] < t - eps and t > 0.5 / fps:
            return  # the seek landed after the wanted time: no frame at or before it
        prev, cached = (t, getter), None
        if k == len(times):
            return
    if prev is not None:
        yield from emit(prev[0] + 1.0 / fps)


# ---------------------------------------------------------------------------------------------------------------
# Writing: the one video writer (sample data, session recordings, synthetic overlay videos, e2e recordings).

CODECS = ("h264", "mp4v")


class VideoWriter:
    """Writes RGB uint8 frames [H, W, 3], all of one even size, to an mp4 file; a context manager.

    codec "h264": libx264 through PyAV, because the OpenCV wheels here cannot write H.264; at `bitrate_kbps`, or at
    constant quality (crf 23) when that is None; `preset=veryfast` on one thread, so the same frames give the same
    bytes. Where PyAV has no libx264 it falls back to "mp4v"; `.codec` says what is written.
    codec "mp4v" (MPEG-4 Part 2): through OpenCV, which picks its own bitrate; with a `bitrate_kbps` through PyAV's
    mpeg4 encoder instead, since OpenCV's writer takes no bitrate.

    size (width, height) opens the file at once; None sizes the video from its first frame (no frames, no file).
    Every frame is checked against that size and uint8 (OpenCV would drop a wrong-sized frame, or crop an odd size,
    without a word); a mismatch, or an encoder that cannot be opened, raises `VideoError` naming the file.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        size: tuple[int, int] | None = None,
        bitrate_kbps: int | None = None,
        codec: str = "mp4v",
    ):
        if codec not in CODECS:
            raise ValueError(f"{path}: codec must be one of {CODECS}, got {codec!r}")
        if not fps or not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"{path}: fps must be positive, got {fps!r}")
        self.path, self.fps, self.bitrate_kbps = Path(path), float(fps), bitrate_kbps
        if codec == "h264" and "libx264" not in av.codecs_available:
            codec = "mp4v"  # a PyAV build without libx264
        self.codec = codec
        # the encoder: PyAV's codec name, or None for OpenCV's mp4v writer
        self._av_codec = "libx264" if codec == "h264" else "mpeg4" if bitrate_kbps is not None else None
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._cv: cv2.VideoWriter | None = None
        self._container: Any = None  # the PyAV output container
        self._stream: Any = None
        self._closed = False
        if size is not None:
            self._open(size)

    def _open(self, size: tuple[int, int]) -> None:
        w, h = size
        if w <= 0 or h <= 0 or w % 2 or h % 2:
            raise VideoError(f"{self.path}: video size must be positive and even (yuv420p), got {w}x{h}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._av_codec is None:
            self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h))
            if not self._cv.isOpened():
                self._cv.release()
                raise VideoError(f"{self.path}: OpenCV cannot open an mp4v video writer")
        else:
            options = {"preset": "veryfast", "threads": "1"} if self._av_codec == "libx264" else {}
            if self.bitrate_kbps is None and self._av_codec == "libx264":
                options["crf"] = "23"
            try:
                self._container = av.open(str(self.path), "w")
                rate = Fraction(self.fps).limit_denominator(1001)
                self._stream = self._container.add_stream(self._av_codec, rate=rate, options=options)
                self._stream.width, self._stream.height = w, h
                self._stream.pix_fmt = "yuv420p"
                if self.bitrate_kbps is not None:
                    self._stream.bit_rate = int(self.bitrate_kbps * 1000)
                self._stream.codec_context.open()
            except (av.error.FFmpegError, OSError, ValueError) as e:
                if self._container is not None:
                    self._container.close()
                    self._container = None
                raise VideoError(f"{self.path}: PyAV cannot open a {self._av_codec} encoder ({e})") from None
        self.size = (w, h)

    def write(self, rgb: np.ndarray) -> None:
        """Appends one RGB uint8 frame [H, W, 3]."""
        if self._closed:
            raise VideoError(f"{self.path}: write after close")
        rgb = np.ascontiguousarray(rgb)  # OpenCV and PyAV take no negative strides (frame[:, :, ::-1])
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise VideoError(
                f"{self.path}: frame {self.frames} is {rgb.dtype} {rgb.shape}; frames must be RGB uint8 [H, W, 3]"
            )
        if self.size is None:
            self._open((rgb.shape[1], rgb.shape[0]))
        assert self.size is not None
        if rgb.shape[:2] != (self.size[1], self.size[0]):
            raise VideoError(
                f"{self.path}: frame {self.frames} is {rgb.shape[1]}x{rgb.shape[0]}; this video is "
                f"{self.size[0]}x{self.size[1]}"
            )
        if self._cv is not None:
            self._cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        else:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flushes the encoder and finishes the file; closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._cv is not None:
            self._cv.release()
        elif self._container is not None:
            try:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            finally:
                self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(
    path: str | Path, frames_rgb: Iterable[np.ndarray], fps: float, codec: str = "mp4v", bitrate_kbps: int | None = None
) -> Path:
    """Frames (RGB uint8, all the same even size) -> a video file through `VideoWriter`; mp4v by default."""
    with VideoWriter(path, fps, bitrate_kbps=bitrate_kbps, codec=codec) as writer:
        for frame in frames_rgb:
            writer.write(frame)
    return writer.path
