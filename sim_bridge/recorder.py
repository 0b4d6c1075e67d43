"""Recording play sessions in the public dataset's layout, so that they can feed fine-tuning.

    <out>/videos/<video_id>.mp4                                   the native frames (mp4v), one per label row
    <out>/actions/<video_id>/<video_id>_chunk_NNNN/{actions_raw.parquet, metadata.json}   (data.layout)
    <out>/videos/<video_id>_actions.mp4                           optional: the action visualiser

Row i of the labels is the input held while video frame i was on screen (the frame the agent saw before acting),
the public data's convention. The metadata's `original_video.url` is the video's file URI.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.data.layout import write_chunks
from nitrogen_jax.sim_bridge.visualize import draw_chunk


def _writer(path: Path, fps: float, size_hw: tuple[int, int]) -> cv2.VideoWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (size_hw[1], size_hw[0]))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot open an mp4v video writer for {path}")
    return writer


class SessionRecorder:
    """Collects (frame, held input) pairs; `close()` finishes the videos and writes the label chunks."""

    def __init__(self, out_dir: str | Path, video_id: str, game: str, fps: float = 60.0, visualize: bool = False):
        self.out_dir = Path(out_dir)
        self.video_id, self.game, self.fps, self.visualize = video_id, game, fps, visualize
        self.video_path = self.out_dir / "videos" / f"{video_id}.mp4"
        self.actions_video_path = self.out_dir / "videos" / f"{video_id}_actions.mp4" if visualize else None
        self._video: cv2.VideoWriter | None = None
        self._actions_video: cv2.VideoWriter | None = None
        self._resolution: tuple[int, int] | None = None
        self._pads: list[Gamepad] = []

    def __len__(self) -> int:
        return len(self._pads)

    def add(self, frame: np.ndarray, chunk: Gamepad, index: int) -> None:
        """frame: native RGB shown before the input; chunk[index] is the input held during it."""
        if self._video is None:
            self._resolution = frame.shape[:2]
            self._video = _writer(self.video_path, self.fps, self._resolution)
        elif frame.shape[:2] != self._resolution:
            raise ValueError(f"{self.video_path}: frame size changed from {self._resolution} to {frame.shape[:2]}")
        self._video.write(np.ascontiguousarray(frame[:, :, ::-1]))
        if self.actions_video_path is not None:
            canvas = draw_chunk(frame, chunk, index)
            if self._actions_video is None:
                self._actions_video = _writer(self.actions_video_path, self.fps, canvas.shape[:2])
            self._actions_video.write(np.ascontiguousarray(canvas[:, :, ::-1]))
        self._pads.append(chunk[index])

    def close(self) -> list[Path]:
        """Finish the videos and write the label chunks; returns the chunk folders."""
        for w in (self._video, self._actions_video):
            if w is not None:
                w.release()
        self._video = self._actions_video = None
        if not self._pads:
            return []
        pads = Gamepad(
            np.concatenate([p.buttons for p in self._pads]),
            np.concatenate([p.j_left for p in self._pads]),
            np.concatenate([p.j_right for p in self._pads]),
        )
        return write_chunks(
            self.out_dir / "actions",
            self.video_id,
            pads,
            fps=self.fps,
            video_url=self.video_path.absolute().as_uri(),
            game=self.game,
            resolution=self._resolution,
        )
