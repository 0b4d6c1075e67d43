"""Frames as the model sees them: any RGB image squashed to the square input with INTER_AREA.

The release's game client squashes its screen capture this way (aspect ratio not kept) before sending it, so every
path into the model (an image file, a game environment, a server request) goes through `squash_frame` to match it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CLIENT_FRAME_SIZE = 256  # the side of the frames the release's client sends


def squash_frame(frame: np.ndarray, size: int = CLIENT_FRAME_SIZE) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> uint8 RGB [size, size, 3] (a no-op copy-free return when already that size)."""
    if frame.shape[:2] == (size, size):
        return frame
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def read_frame(path: str | Path, size: int = CLIENT_FRAME_SIZE) -> np.ndarray:
    """An image file -> uint8 RGB [size, size, 3]."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path} (missing or not an image file)")
    return squash_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
