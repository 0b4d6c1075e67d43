"""Recording play sessions in the public dataset's layout, so that they can feed fine-tuning.

    <out>/videos/<video_id>.mp4                                   the native frames (mp4v), one per label row
    <out>/actions/<video_id>/<video_id>_chunk_NNNN/{actions_raw.parquet, metadata.json}   (data.layout)
    <out>/videos/<video_id>_actions.mp4                           optional: the action visualiser

Row i of the labels is the input held while video frame i was on screen (the frame the agent saw before acting),
the public data's convention. The metadata's `original_video.url` is the video's file URI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.data.layout import write_chunks
from nitrogen_jax.data.video import VideoWriter
from nitrogen_jax.sim_bridge.visualize import draw_chunk


class SessionRecorder:
    """Collects (frame, held input) pairs; `close()` finishes the videos and writes the label chunks."""

    def __init__(self, out_dir: str | Path, video_id: str, game: str, fps: float = 60.0, visualize: bool = False):
        self.out_dir = Path(out_dir)
        self.video_id, self.game, self.fps, self.visualize = video_id, game, fps, visualize
        self.video_path = self.out_dir / "videos" / f"{video_id}.mp4"
        self.actions_video_path = self.out_dir / "videos" / f"{video_id}_actions.mp4" if visualize else None
        # mp4v through OpenCV (data.video.VideoWriter); each sized by its first frame, which must keep its size
        self._video = VideoWriter(self.video_path, fps, codec="mp4v")
        self._actions_video = (
            VideoWriter(self.actions_video_path, fps, codec="mp4v") if self.actions_video_path else None
        )
        self._pads: list[Gamepad] = []

    def __len__(self) -> int:
        return len(self._pads)

    def add(self, frame: np.ndarray, chunk: Gamepad, index: int) -> None:
        """frame: native RGB shown before the input; chunk[index] is the input held during it."""
        self._video.write(frame)
        if self._actions_video is not None:
            self._actions_video.write(draw_chunk(frame, chunk, index))
        self._pads.append(chunk[index])

    def close(self) -> list[Path]:
        """Finish the videos and write the label chunks; returns the chunk folders."""
        for w in (self._video, self._actions_video):
            if w is not None:
                w.close()
        if not self._pads:
            return []
        assert self._video.size is not None  # sized by the first frame
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
            resolution=(self._video.size[1], self._video.size[0]),
        )
