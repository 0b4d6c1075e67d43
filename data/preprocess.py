"""Turning one video and its label chunks into training samples: frame preparation, action chunks, density filter.

This is the per-video work of the Beam pipeline (`pipeline.py`), kept free of Beam so it reads and tests on its
own. A video's chunks are laid on one label timeline (rows at the labels' 60 fps, from the earliest chunk), so an
action chunk that runs past the end of a label chunk continues into the next one; steps past the data or in a
gap between chunks get action mask 0. Row r of a chunk lies at `start_time + r / label_fps` seconds of the
original video, and the frame shown then is found by the local copy's own timestamps, so a copy at another frame
rate or resolution lines up. A long video is cut into `Segment`s (time ranges) that are written independently.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator

import cv2
import numpy as np

from nitrogen_jax.actions import Gamepad, get_layout
from nitrogen_jax.data.example import Sample, encode_sample
from nitrogen_jax.data.layout import ChunkMetadata, LabelError, frame_box
from nitrogen_jax.data.report import Report
from nitrogen_jax.data.video import VideoError, frames_at_times


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """What a training sample is made of: a frame and the action chunk that follows it, in a model's layout."""

    layout: str = "release"
    """Action layout of the targets (release, seed)."""
    action_horizon: int = 18
    """Action steps per sample (the release: 18 at 60 Hz; the seed layout: 16 at 30 Hz)."""
    action_fps: float = 60.0
    """The model's action rate in Hz; labels are resampled to it by taking the row at each step's time."""
    action_shift: int = 0
    """Action steps between the frame and the first step of its chunk."""
    frame_stride: int = 1
    """Take every k-th label row as a training frame."""
    image_size: int = 256
    """Side of the square training frames."""
    jpeg_quality: int = 95
    """JPEG quality of the stored frames."""
    density_window_s: float = 30.0
    """Seconds per action-density window."""
    density_threshold: float = 0.5
    """Drop windows where fewer label rows than this fraction have a button pressed or a stick beyond
    stick_deadzone (0 disables the filter)."""
    stick_deadzone: float = 0.05
    """Stick deflection that counts as active for the density filter."""
    records_per_shard: int = 4096
    """Records per TFRecord shard."""
    max_shard_mb: float = 256.0
    """A shard is closed once it holds this many MB (besides records_per_shard), so shards stay bounded in size."""
    segment_s: float = 600.0
    """Seconds of video per work item: long videos are split into time ranges written independently (each one
    seeks to its start, so a failed range restarts there)."""
    strict: bool = False
    """Fail on the first bad input instead of skipping and counting it."""

    def __post_init__(self):
        get_layout(self.layout)
        for name in ("action_horizon", "frame_stride", "image_size", "records_per_shard", "max_shard_mb", "segment_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"PreprocessConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.density_threshold <= 1:
            raise ValueError(f"PreprocessConfig.density_threshold must be in [0, 1], got {self.density_threshold}")


@dataclasses.dataclass
class LabelChunk:
    """One chunk's labels as read (the unit the pipeline groups by video)."""

    name: str
    index: int
    gamepad: Gamepad
    meta: ChunkMetadata


@dataclasses.dataclass
class Timeline:
    """A video's labels on one row axis: row r is label time base + r / label_fps."""

    gamepad: Gamepad
    valid: np.ndarray  # bool [T]: a chunk covers the row
    time: np.ndarray  # float64 [T]: seconds into the original video of the row (NaN where not valid)
    chunk: np.ndarray  # int32 [T]: position in `chunks` of the row's chunk (-1 where not valid)
    chunks: list[LabelChunk]
    label_fps: float


def build_timeline(chunks: list[LabelChunk], video_fps: float | None, report: Report, strict: bool = False) -> Timeline:
    """Lay the chunks on one timeline; a chunk overlapping an earlier one is skipped (or raises when strict)."""
    chunks = sorted(chunks, key=lambda c: c.meta.start_time)
    label_fps = chunks[0].meta.label_fps
    base = round(chunks[0].meta.start_time * label_fps)
    end = max(round(c.meta.start_time * label_fps) - base + len(c.gamepad) for c in chunks)
    pad, valid = Gamepad.zeros(end), np.zeros(end, bool)
    time, owner = np.full(end, np.nan), np.full(end, -1, np.int32)
    placed: list[LabelChunk] = []
    for c in chunks:
        lo = round(c.meta.start_time * label_fps) - base
        hi = lo + len(c.gamepad)
        problem = (
            f"label rate {c.meta.label_fps} differs from the video's other chunks ({label_fps})"
            if c.meta.label_fps != label_fps
            else f"overlaps an earlier chunk of the same video on label rows {lo}..{hi}"
            if valid[lo:hi].any()
            else None
        )
        if problem:
            if strict:
                raise LabelError(f"{c.name}: {problem}")
            report.skip(c.name, problem, key="chunks_skipped")
            continue
        pad.buttons[lo:hi], pad.j_left[lo:hi], pad.j_right[lo:hi] = (
            c.gamepad.buttons,
            c.gamepad.j_left,
            c.gamepad.j_right,
        )
        valid[lo:hi] = True
        rows = np.arange(len(c.gamepad))
        time[lo:hi] = c.meta.start_time + rows / label_fps
        owner[lo:hi] = len(placed)
        placed.append(c)
    return Timeline(pad, valid, time, owner, placed, label_fps)


def active_rows(pad: Gamepad, deadzone: float) -> np.ndarray:
    """bool [T]: rows with any button pressed or a stick beyond the deadzone."""
    sticks = np.concatenate([pad.j_left, pad.j_right], axis=1)
    return pad.buttons.any(axis=1) | (np.abs(sticks) > deadzone).any(axis=1)


def density_keep(tl: Timeline, cfg: PreprocessConfig) -> np.ndarray:
    """bool [T]: rows in windows whose labelled rows are at least `density_threshold` active."""
    keep = tl.valid.copy()
    if cfg.density_threshold <= 0:
        return keep
    window = max(1, round(cfg.density_window_s * tl.label_fps))
    active = active_rows(tl.gamepad, cfg.stick_deadzone) & tl.valid
    for lo in range(0, len(keep), window):
        labelled = tl.valid[lo : lo + window].sum()
        if labelled and active[lo : lo + window].sum() < cfg.density_threshold * labelled:
            keep[lo : lo + window] = False
    return keep


def action_steps(cfg: PreprocessConfig, label_fps: float) -> np.ndarray:
    """int [H]: label-row offsets of the chunk's steps from its frame's row."""
    k = np.arange(cfg.action_shift, cfg.action_shift + cfg.action_horizon)
    return np.round(k * label_fps / cfg.action_fps).astype(np.int64)


def action_chunk(encoded: np.ndarray, valid: np.ndarray, row: int, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(actions [H, A], mask [H, A]) following `row`; steps past the data or in a gap are zero with mask 0."""
    rows = row + steps
    inside = rows < len(valid)
    ok = np.zeros(len(rows), bool)
    ok[inside] = valid[rows[inside]]
    actions = np.zeros((len(rows), encoded.shape[1]), np.float32)
    actions[ok] = encoded[rows[ok]]
    return actions, np.repeat(ok[:, None], encoded.shape[1], axis=1).astype(np.float32)


def prepare_frame(frame: np.ndarray, meta: ChunkMetadata, size: int, source: str = "") -> np.ndarray:
    """RGB frame -> uint8 [size, size, 3]: overlay and other boxes blacked out, cropped to the game area, resized.

    Pixel boxes are scaled from the source resolution when the metadata gives it (`frame_box`); a box that does
    not fit the frame raises LabelError naming `source` and the box.
    """
    h, w = frame.shape[:2]
    masked = [frame_box(b, w, h, meta.source_size, source) for b in (meta.bbox_controller_overlay, *meta.bbox_others)]
    if any(b is not None for b in masked):
        frame = frame.copy()
        for b in masked:
            if b is not None:
                x0, y0, x1, y1 = b
                frame[y0:y1, x0:x1] = 0
    area = frame_box(meta.bbox_game_area, w, h, meta.source_size, source)
    if area is not None:
        x0, y0, x1, y1 = area
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise LabelError(f"{source}: bbox_game_area {meta.bbox_game_area!r} is empty on a {w}x{h} frame")
        frame = frame[y0:y1, x0:x1]
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (cv2.IMWRITE_JPEG_QUALITY, quality))
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


@dataclasses.dataclass
class Segment:
    """One time range of one video: the unit of work that decodes frames and writes shards.

    It carries only its own slice of the timeline (`encoded`/`valid` from label row `offset` on, long enough for
    the last row's action chunk) and the metadata of the chunks it touches, so it stays small however long the
    video is.
    """

    video_id: str
    index: int
    video_path: str
    video_fps: float
    rows: np.ndarray  # int64 [N]: label rows to write, ascending
    times: np.ndarray  # float64 [N]: their time in the video
    owner: np.ndarray  # int32 [N]: position of each row's chunk in `metas`
    metas: list[ChunkMetadata]
    names: list[str]  # the chunks' names, for errors
    offset: int
    encoded: np.ndarray  # float32 [M, A]: encoded actions of label rows offset .. offset + M
    valid: np.ndarray  # bool [M]


def _boxes_fit(chunk: LabelChunk, frame_size: tuple[int, int], report: Report, strict: bool) -> bool:
    m = chunk.meta
    try:
        for box in (m.bbox_game_area, m.bbox_controller_overlay, *m.bbox_others):
            frame_box(box, *frame_size, m.source_size, chunk.name)
    except LabelError as e:
        if strict:
            raise
        report.skip(chunk.name, str(e), key="chunks_skipped")
        return False
    return True


def plan_segments(
    video_id: str,
    chunks: list[LabelChunk],
    video_path: str,
    video_fps: float,
    cfg: PreprocessConfig,
    report: Report,
    frame_size: tuple[int, int] | None = None,
) -> list[Segment]:
    """A video's timeline, density filter and sample rows, cut into `cfg.segment_s` time ranges; counts drops.

    frame_size (width, height) of the local copy, when given, checks every chunk's boxes up front: a chunk whose
    box does not fit is skipped and counted (raises when strict) instead of failing a segment mid-way.
    """
    if frame_size is not None:
        chunks = [c for c in chunks if _boxes_fit(c, frame_size, report, cfg.strict)]
        if not chunks:
            return []
    tl = build_timeline(chunks, video_fps, report, cfg.strict)
    report.count("chunks", len(tl.chunks))
    report.count("label_rows", int(tl.valid.sum()))
    keep = density_keep(tl, cfg)
    report.count("label_rows_kept", int(keep.sum()))
    encoded = get_layout(cfg.layout).encode(tl.gamepad).astype(np.float32)
    steps = action_steps(cfg, tl.label_fps)
    rows = np.flatnonzero(keep)
    rows = rows[rows % cfg.frame_stride == 0]
    first_ok = (rows + steps[0] < len(tl.valid)) & tl.valid[np.minimum(rows + steps[0], len(tl.valid) - 1)]
    report.count("samples_without_first_action", int((~first_ok).sum()))
    rows = rows[first_ok]
    if not len(rows):
        return []
    part = np.floor((tl.time[rows] - tl.time[rows[0]]) / cfg.segment_s).astype(np.int64)
    segments = []
    for k in np.unique(part):
        seg_rows = rows[part == k]
        lo, hi = int(seg_rows[0]), min(int(seg_rows[-1] + max(steps.max(), 0) + 1), len(tl.valid))
        used = np.unique(tl.chunk[seg_rows])
        remap = np.full(len(tl.chunks), -1, np.int32)
        remap[used] = np.arange(len(used))
        segments.append(
            Segment(
                video_id=video_id,
                index=int(k),
                video_path=video_path,
                video_fps=video_fps,
                rows=seg_rows,
                times=tl.time[seg_rows],
                owner=remap[tl.chunk[seg_rows]],
                metas=[tl.chunks[i].meta for i in used],
                names=[tl.chunks[i].name for i in used],
                offset=lo,
                encoded=encoded[lo:hi],
                valid=tl.valid[lo:hi],
            )
        )
    return segments


def segment_samples(seg: Segment, cfg: PreprocessConfig, report: Report) -> Iterator[bytes]:
    """Serialized Examples of one segment, in time order, decoding its time range once; counts what it drops."""
    steps = action_steps(cfg, 60.0 if not seg.metas else seg.metas[0].label_fps)
    done = 0
    try:
        for k, frame_index, frame in frames_at_times(seg.video_path, seg.times, seg.video_fps):
            r, c = int(seg.rows[k]), int(seg.owner[k])
            img = prepare_frame(frame, seg.metas[c], cfg.image_size, seg.names[c])
            actions, mask = action_chunk(seg.encoded, seg.valid, r - seg.offset, steps)
            report.add_actions(actions, mask)
            done += 1
            yield encode_sample(Sample(encode_jpeg(img, cfg.jpeg_quality), actions, mask, seg.video_id, r, frame_index))
        if done < len(seg.rows):
            last = int(np.floor(seg.times[-1] * seg.video_fps + 1e-6))
            raise VideoError(
                f"{seg.video_path}: the video ends before frame {last} (at {seg.times[-1]:.3f} s) that its labels "
                f"point at ({len(seg.rows) - done} label rows from {seg.times[done]:.3f} s on have no frame)"
            )
    except VideoError as e:
        if cfg.strict:
            raise
        report.skip(seg.video_path, str(e), count=len(seg.rows) - done, key="samples_without_frame")
    finally:
        report.count("samples", done)


def video_samples(
    video_id: str, chunks: list[LabelChunk], video_path: str, video_fps: float, cfg: PreprocessConfig, report: Report
) -> Iterator[bytes]:
    """Serialized Examples for one whole video, in timeline order (all its segments in turn)."""
    for seg in plan_segments(video_id, chunks, video_path, video_fps, cfg, report):
        yield from segment_samples(seg, cfg, report)


def shard_name(video_id: str, part: int, segment: int | None = None) -> str:
    """A file-system-safe shard name per video (and time segment); ids outside [A-Za-z0-9_.-] get a hash."""
    safe = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in video_id)
    if safe != video_id:
        safe += f"_{zlib.crc32(video_id.encode()):08x}"
    return f"{safe}-{part:05d}.tfrecord" if segment is None else f"{safe}-{segment:05d}-{part:03d}.tfrecord"
