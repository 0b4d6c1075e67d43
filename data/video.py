"""Sequential frame access to a user's local copy of a video (OpenCV), for the frames a chunk's labels point at."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

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


def write_video(path: str | Path, frames_rgb: Iterable[np.ndarray], fps: float) -> Path:
    """Frames (RGB uint8, all the same even size) -> an MPEG-4 Part 2 (mp4v) file; OpenCV cannot write H.264 here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for frame in frames_rgb:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise VideoError(f"{path}: OpenCV cannot write mp4v video")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path
