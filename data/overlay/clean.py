"""Stage 3 of overlay extraction: per-frame parser outputs -> labels in the public layout.

The parser reads each stick against its template's ring, but a streamer's overlay can sit a little off centre (its
rest position is not exactly the ring's centre) or never draw the cap all the way to the ring (full deflection
reads as 0.8). Both are per-video constants, so they are estimated from the video itself, as the paper does:
the origin from the video's mean stick position, the scale from the 99th percentile of absolute deflection. The
mean is taken over the frames where the stick is near rest, because a plain mean follows whatever direction the
player held most (a racing game steered left for a minute) and would shift every frame by it. The scale is one
number per stick, the percentile of each frame's larger axis: an overlay draws the cap's travel alike in x and y,
and a player who pushed only left and right in a clip would otherwise have the small up-and-down wobble of the
other axis stretched to full deflection (per-axis scales cost one 4-second bench clip R^2 0.996 -> 0.942). The
scale is only trusted when the stick was actually moved: a stick that stays at rest has a 99th percentile of pure
noise, and dividing by it would blow that noise up to full deflection, so the scale never goes below `min_scale`.

Buttons are thresholded; label rows are laid at the public 60 fps (a 30 fps video gives each frame two rows); the
project's action-density filter (`data.preprocess.density_keep`) then drops inactive windows, and the kept rows
are written with `data.layout.write_chunks`, so `nitrogen-jax preprocess` reads them like released labels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.data.layout import LABEL_FPS, write_chunks
from nitrogen_jax.data.preprocess import PreprocessConfig, Timeline, density_keep


@dataclasses.dataclass(frozen=True)
class CleanConfig:
    """How raw parser outputs become labels."""

    button_threshold: float = 0.5
    """a button counts as pressed when the parser's probability is above this"""
    rest_radius: float = 0.25
    """frames whose raw stick lies within this radius of the centre estimate the origin"""
    scale_percentile: float = 99.0
    """percentile of max(|x|, |y|) of stick - origin taken as full deflection (one scale per stick)"""
    min_scale: float = 0.5
    """the estimated full deflection is never taken below this (a stick left at rest would amplify noise)"""
    density_window_s: float = 30.0
    """seconds per window of the action-density filter (the preprocessing's filter, reused)"""
    density_threshold: float = 0.5
    """windows with fewer active rows than this fraction are dropped (0 keeps everything)"""
    stick_deadzone: float = 0.05
    """a stick beyond this counts as active for the density filter"""

    def __post_init__(self):
        if not 0 < self.button_threshold < 1:
            raise ValueError(f"CleanConfig.button_threshold must be in (0, 1), got {self.button_threshold}")
        if not 0 < self.scale_percentile <= 100:
            raise ValueError(f"CleanConfig.scale_percentile must be in (0, 100], got {self.scale_percentile}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"CleanConfig.min_scale must be in (0, 1], got {self.min_scale}")


@dataclasses.dataclass(frozen=True)
class StickCalibration:
    """Per-stick origin and scale (the same for both axes, kept per axis for the JSON): cleaned = clip((raw -
    origin) / scale, -1, 1)."""

    origin: np.ndarray  # float32 [2]
    scale: np.ndarray  # float32 [2]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return np.clip((raw - self.origin) / self.scale, -1.0, 1.0).astype(np.float32)

    def to_json(self) -> dict:
        return {"origin": [round(float(v), 4) for v in self.origin], "scale": [round(float(v), 4) for v in self.scale]}


def calibrate_stick(raw: np.ndarray, cfg: CleanConfig = CleanConfig()) -> StickCalibration:
    """Origin and scale of one stick from its raw per-frame positions [N, 2] (see the module docstring)."""
    raw = np.asarray(raw, np.float64)
    if raw.ndim != 2 or raw.shape[1] != 2 or not len(raw):
        raise ValueError(f"calibrate_stick: expected stick positions [N, 2] with N >= 1, got {raw.shape}")
    if not np.isfinite(raw).all():
        raise ValueError("calibrate_stick: stick positions contain NaN or infinity")
    near_rest = np.linalg.norm(raw, axis=1) < cfg.rest_radius
    origin = raw[near_rest].mean(0) if near_rest.any() else raw.mean(0)
    scale = np.percentile(np.abs(raw - origin).max(axis=1), cfg.scale_percentile)
    return StickCalibration(origin.astype(np.float32), np.full(2, max(scale, cfg.min_scale), np.float32))


def frames_to_rows(num_frames: int, video_fps: float, label_fps: float = LABEL_FPS) -> np.ndarray:
    """int [R]: the video frame each label row shows (row r at r / label_fps seconds), the preprocessing's rule;
    the rows cover the video's duration, num_frames / video_fps seconds."""
    rows = max(1, int(np.floor(num_frames * label_fps / video_fps + 1e-6)))
    return np.floor(np.arange(rows) * video_fps / label_fps + 1e-6).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class CleanedLabels:
    """Label rows at `label_fps` (all of them), which rows the density filter keeps, and the calibration used."""

    per_frame: Gamepad  # one state per video frame
    gamepad: Gamepad  # one state per label row
    keep: np.ndarray  # bool [R]
    label_fps: float
    video_fps: float
    calibration: dict[str, StickCalibration]

    def kept_segments(self) -> list[tuple[int, int]]:
        """[lo, hi) row ranges of consecutive kept rows."""
        edges = np.diff(np.concatenate([[0], self.keep.astype(np.int8), [0]]))
        return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def clean_parsed(
    buttons: np.ndarray, j_left: np.ndarray, j_right: np.ndarray, video_fps: float, cfg: CleanConfig = CleanConfig()
) -> CleanedLabels:
    """Per video frame parser outputs (button probabilities [N, 17], raw sticks [N, 2]) -> cleaned 60 fps rows."""
    n = len(buttons)
    if not n or len(j_left) != n or len(j_right) != n:
        raise ValueError(
            f"clean_parsed: need N >= 1 frames of buttons/j_left/j_right, got {n}/{len(j_left)}/{len(j_right)}"
        )
    calibration = {"j_left": calibrate_stick(j_left, cfg), "j_right": calibrate_stick(j_right, cfg)}
    per_frame = Gamepad(
        np.asarray(buttons) > cfg.button_threshold,
        calibration["j_left"].apply(j_left),
        calibration["j_right"].apply(j_right),
    )
    frame_of_row = frames_to_rows(n, video_fps)
    pad = Gamepad(per_frame.buttons[frame_of_row], per_frame.j_left[frame_of_row], per_frame.j_right[frame_of_row])
    rows = len(frame_of_row)
    timeline = Timeline(pad, np.ones(rows, bool), frame_of_row, np.zeros(rows, np.int32), [], LABEL_FPS)
    density = PreprocessConfig(
        density_window_s=cfg.density_window_s,
        density_threshold=cfg.density_threshold,
        stick_deadzone=cfg.stick_deadzone,
    )
    return CleanedLabels(per_frame, pad, density_keep(timeline, density), LABEL_FPS, float(video_fps), calibration)


def write_labels(
    out_dir: str | Path,
    video_id: str,
    labels: CleanedLabels,
    *,
    video_url: str = "",
    game: str = "",
    bbox_controller_overlay=None,
    bbox_game_area=None,
    resolution: tuple[int, int] | None = None,
) -> list[Path]:
    """The kept rows as public-layout chunks; each kept segment starts a new chunk at its own start frame."""
    dirs: list[Path] = []
    for lo, hi in labels.kept_segments():
        start_frame = int(np.floor(lo * labels.video_fps / labels.label_fps + 1e-6))
        dirs += write_chunks(
            out_dir,
            video_id,
            labels.gamepad[lo:hi],
            fps=labels.label_fps,
            video_fps=labels.video_fps,
            video_url=video_url,
            start_frame=start_frame,
            game=game,
            bbox_game_area=bbox_game_area,
            bbox_controller_overlay=bbox_controller_overlay,
            resolution=resolution,
            first_chunk=len(dirs),
        )
    return dirs
