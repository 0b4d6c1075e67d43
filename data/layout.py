"""The public dataset's label layout, read and written: one path in for released labels and our own recordings.

    <root>/<video_id>/<video_id>_chunk_NNNN/actions_raw.parquet   (1200 rows = 20 s at 60 fps)
                                           /metadata.json          (original_video.{url, start_frame, start_time},
                                                                    chunk_size, game, bbox_*)

`actions_raw.parquet` holds the 17 standard buttons as boolean columns (named as `STANDARD_BUTTONS`) and the sticks
`j_left`, `j_right` as [x, y] lists in [-1, 1] (y positive downward). Released tar shards (`SHARD_NNNN.tar.gz`)
hold the same tree and are read in place, in one streaming pass each (`read_tar_chunks`: one decompression,
whatever the shard's size; a 1.5 GB shard is never listed first and re-opened per chunk).

Boxes come in the two forms seen in released metadata: a dict `{xtl, ytl, xbr, ybr}` (corners) or a list
`[x, y, w, h]`; values all in [0, 1] are fractions of the frame, otherwise pixels of the source video (whose size
`original_video.resolution` [height, width] gives, when known). `frame_box` turns either into pixel corners of the
local frame, scaled from the source resolution, and refuses a box that does not fit.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from nitrogen_jax.actions import STANDARD_BUTTONS, STICKS, Gamepad

LABELS_FILE = "actions_raw.parquet"
METADATA_FILE = "metadata.json"
LABEL_FPS = 60.0
CHUNK_SIZE = 1200
STICK_TOLERANCE = 1e-3  # sticks may overshoot [-1, 1] by float noise, not more
_CHUNK_DIR = re.compile(r"^(?P<video>.+)_chunk_(?P<index>\d+)$")
FULL_FRAME = {"xtl": 0.0, "ytl": 0.0, "xbr": 1.0, "ybr": 1.0}


class LabelError(ValueError):
    """A chunk's labels or metadata are unusable; the message names the file, the field and what was expected."""


@dataclasses.dataclass(frozen=True)
class ChunkMetadata:
    """The fields of a chunk's metadata.json that preprocessing uses; everything else is kept in `extra`.

    start_frame/start_time locate the chunk's first label row in the source video; label row i lies at
    start_time + i / label_fps seconds. Boxes are kept in their JSON form (see `box_pixels`).
    """

    video_url: str
    start_frame: int
    start_time: float
    chunk_size: int
    game: str
    bbox_game_area: Any = None
    bbox_controller_overlay: Any = None
    bbox_others: tuple = ()
    label_fps: float = LABEL_FPS
    video_fps: float | None = None
    extra: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def source_size(self) -> tuple[int, int] | None:
        """(height, width) of the original video when the metadata gives it: `original_video.resolution`
        [height, width], or `original_video.{height, width}`."""
        original = self.extra.get("original_video") or {}
        res = original.get("resolution")
        if isinstance(res, (list, tuple)) and len(res) == 2:
            return int(res[0]), int(res[1])
        if original.get("height") and original.get("width"):
            return int(original["height"]), int(original["width"])
        return None

    def to_json(self) -> dict:
        original = dict(self.extra.get("original_video", {}))
        original.update(url=self.video_url, start_frame=self.start_frame, start_time=self.start_time)
        if self.video_fps is not None:
            original["fps"] = self.video_fps
        out = {k: v for k, v in self.extra.items() if k != "original_video"}
        out.update(
            original_video=original,
            chunk_size=self.chunk_size,
            game=self.game,
            label_fps=self.label_fps,
            bbox_controller_overlay=self.bbox_controller_overlay,
            bbox_game_area=self.bbox_game_area,
            bbox_others=list(self.bbox_others),
        )
        return out

    @classmethod
    def from_json(cls, raw: dict, source: str) -> ChunkMetadata:
        def need(d, key, kind, where):
            if not isinstance(d, dict) or key not in d:
                raise LabelError(f"{source}: metadata field {where} is missing")
            v = d[key]
            if not isinstance(v, kind) or isinstance(v, bool):
                raise LabelError(f"{source}: metadata field {where} = {v!r}, expected {kind}")
            return v

        original = need(raw, "original_video", dict, "original_video")
        start_frame = need(original, "start_frame", (int, float), "original_video.start_frame")
        start_time = original.get("start_time")
        video_fps = original.get("fps")
        if start_time is None:
            if not video_fps:
                raise LabelError(f"{source}: metadata has neither original_video.start_time nor original_video.fps")
            start_time = start_frame / video_fps
        chunk_size = need(raw, "chunk_size", int, "chunk_size")
        others = raw.get("bbox_others") or ()
        for box in (raw.get("bbox_game_area"), raw.get("bbox_controller_overlay"), *others):
            _check_box(box, source)
        known = {"chunk_size", "game", "bbox_game_area", "bbox_controller_overlay", "bbox_others", "label_fps"}
        return cls(
            video_url=str(original.get("url", "")),
            start_frame=int(start_frame),
            start_time=float(start_time),
            chunk_size=chunk_size,
            game=str(raw.get("game", "")),
            bbox_game_area=raw.get("bbox_game_area"),
            bbox_controller_overlay=raw.get("bbox_controller_overlay"),
            bbox_others=tuple(others),
            label_fps=float(raw.get("label_fps", LABEL_FPS)),
            video_fps=video_fps,
            extra={k: v for k, v in raw.items() if k not in known},
        )


def _check_box(box, source: str) -> None:
    if box is None or box == []:
        return
    if isinstance(box, dict):
        values = [box.get(k) for k in ("xtl", "ytl", "xbr", "ybr")]
    elif isinstance(box, (list, tuple)) and len(box) == 4:
        values = list(box)
    else:
        raise LabelError(f"{source}: box {box!r} is neither {{xtl, ytl, xbr, ybr}} nor [x, y, w, h]")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise LabelError(f"{source}: box {box!r} has non-numeric or non-finite values")


def box_pixels(box, width: int, height: int) -> tuple[int, int, int, int] | None:
    """A box in either metadata form -> pixel corners (x0, y0, x1, y1) clipped to the frame; None for no box."""
    if box is None or box == []:
        return None
    x0, y0, x1, y1 = _corners(box)
    if max(abs(x0), abs(y0), abs(x1), abs(y1)) <= 1.0:
        x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
    x0, x1 = (int(round(min(max(v, 0), width))) for v in (x0, x1))
    y0, y1 = (int(round(min(max(v, 0), height))) for v in (y0, y1))
    return x0, y0, x1, y1


def _corners(box) -> tuple[float, float, float, float]:
    if isinstance(box, dict):
        x0, y0, x1, y1 = (float(box[k]) for k in ("xtl", "ytl", "xbr", "ybr"))
        return x0, y0, x1, y1
    x0, y0, w, h = (float(v) for v in box)
    return x0, y0, x0 + w, y0 + h


def frame_box(
    box, width: int, height: int, source_size: tuple[int, int] | None = None, source: str = ""
) -> tuple[int, int, int, int] | None:
    """A metadata box -> pixel corners (x0, y0, x1, y1) on a width x height frame; None for no box.

    Fractions scale with the frame. Pixels are in the source video's resolution: scaled by frame / source when
    `source_size` (height, width) is known, taken as they are otherwise. A box reaching more than 1% (+1 px)
    outside the frame raises LabelError naming `source` and the box, instead of clipping to something else.
    """
    if box is None or box == []:
        return None
    x0, y0, x1, y1 = _corners(box)
    scaled = ""
    if max(abs(x0), abs(y0), abs(x1), abs(y1)) <= 1.0:
        x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
    elif source_size is not None:
        sy, sx = height / source_size[0], width / source_size[1]
        x0, x1, y0, y1 = x0 * sx, x1 * sx, y0 * sy, y1 * sy
        scaled = f" (scaled from the source's {source_size[1]}x{source_size[0]})"
    tx, ty = 0.01 * width + 1, 0.01 * height + 1
    if x0 < -tx or y0 < -ty or x1 > width + tx or y1 > height + ty:
        hint = scaled or "; if the box is in pixels of a larger source video, give original_video.resolution"
        raise LabelError(
            f"{source}: box {box!r} is ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) px{scaled}, which does not fit "
            f"the {width}x{height} frame{hint if not scaled else ''}"
        )
    x0, x1 = (int(round(min(max(v, 0), width))) for v in (x0, x1))
    y0, y1 = (int(round(min(max(v, 0), height))) for v in (y0, y1))
    return x0, y0, x1, y1


# ---------------------------------------------------------------------------------------------------------------
# Writing


def write_chunks(
    out_dir: str | Path,
    video_id: str,
    gamepad: Gamepad,
    *,
    fps: float = LABEL_FPS,
    video_url: str = "",
    start_frame: int = 0,
    game: str = "",
    video_fps: float | None = None,
    chunk_size: int = CHUNK_SIZE,
    bbox_game_area=None,
    bbox_controller_overlay=None,
    bbox_others=(),
    resolution: tuple[int, int] | None = None,
    first_chunk: int = 0,
) -> list[Path]:
    """Write a labelled recording as `<out_dir>/<video_id>/<video_id>_chunk_NNNN/` chunks; returns the chunk dirs.

    gamepad: one state per label row at `fps` (the public data uses 60). video_fps: the frame rate of the video the
    labels belong to (default `fps`); start_frame: the video frame of the first row. bbox_game_area defaults to the
    whole frame; resolution (height, width) is recorded when given. first_chunk: the number of the first chunk
    folder, so a recording with gaps (rows dropped in between) can be written segment by segment.
    """
    if not video_id or "/" in video_id:
        raise ValueError(f"video_id must be a non-empty name without '/', got {video_id!r}")
    if len(gamepad) == 0:
        raise ValueError(f"write_chunks({video_id!r}): the gamepad sequence is empty")
    _check_sticks(gamepad.j_left, "j_left", f"write_chunks({video_id!r})")
    _check_sticks(gamepad.j_right, "j_right", f"write_chunks({video_id!r})")
    video_fps = float(video_fps or fps)
    extra = {} if resolution is None else {"original_video": {"resolution": [int(resolution[0]), int(resolution[1])]}}
    dirs = []
    for k, lo in enumerate(range(0, len(gamepad), chunk_size)):
        hi = min(lo + chunk_size, len(gamepad))
        frame = start_frame + round(lo * video_fps / fps)
        meta = ChunkMetadata(
            video_url=video_url,
            start_frame=int(frame),
            start_time=frame / video_fps,
            chunk_size=chunk_size,
            game=game,
            bbox_game_area=FULL_FRAME if bbox_game_area is None else bbox_game_area,
            bbox_controller_overlay=bbox_controller_overlay,
            bbox_others=tuple(bbox_others),
            label_fps=float(fps),
            video_fps=video_fps,
            extra=extra,
        )
        chunk_dir = Path(out_dir) / video_id / f"{video_id}_chunk_{first_chunk + k:04d}"
        chunk_dir.mkdir(parents=True, exist_ok=True)
        _write_parquet(
            chunk_dir / LABELS_FILE, Gamepad(gamepad.buttons[lo:hi], gamepad.j_left[lo:hi], gamepad.j_right[lo:hi])
        )
        (chunk_dir / METADATA_FILE).write_text(json.dumps(meta.to_json(), indent=2))
        dirs.append(chunk_dir)
    return dirs


def _write_parquet(path: Path, pad: Gamepad) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: pa.array(pad.buttons[:, i]) for i, name in enumerate(STANDARD_BUTTONS)}
    for stick in STICKS:
        flat = pa.array(np.ascontiguousarray(getattr(pad, stick), np.float32).reshape(-1))
        columns[stick] = pa.FixedSizeListArray.from_arrays(flat, 2)
    pq.write_table(pa.table(columns), path)


# ---------------------------------------------------------------------------------------------------------------
# Reading


@dataclasses.dataclass(frozen=True)
class ChunkRef:
    """Where one chunk lives: a folder, or a member prefix inside a tar shard."""

    video_id: str
    index: int
    path: str  # the chunk folder, or the tar file
    member: str | None = None  # the chunk's folder inside the tar

    @property
    def name(self) -> str:
        return f"{self.path}:{self.member}" if self.member else self.path


def find_chunks(root: str | Path, unreadable: list | None = None) -> list[ChunkRef]:
    """All chunks under `root` (a folder tree, a tar shard, or a folder of tar shards), sorted by video and index.

    A tar shard that cannot be read raises LabelError, or is appended to `unreadable` as (path, reason) when given.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"label root {root} does not exist")
    refs: list[ChunkRef] = []
    tars = [root] if root.is_file() else sorted(root.rglob("*.tar*"))
    for tar_path in tars:
        try:
            with tarfile.open(tar_path) as tar:
                found = [_chunk_ref(m.name, str(tar_path), in_tar=True) for m in tar.getmembers()]
        except (tarfile.TarError, OSError, EOFError) as e:
            if unreadable is None:
                raise LabelError(f"{tar_path}: unreadable tar shard ({e})") from None
            unreadable.append((str(tar_path), f"unreadable tar shard ({e})"))
            continue
        refs += [r for r in found if r is not None]
    if root.is_dir():
        for meta in root.rglob(METADATA_FILE):
            ref = _chunk_ref(str(meta), str(meta.parent), in_tar=False)
            if ref is not None:
                refs.append(ref)
    return sorted(refs, key=lambda r: (r.video_id, r.index, r.name))


def _chunk_ref(metadata_path: str, location: str, in_tar: bool) -> ChunkRef | None:
    parts = metadata_path.rstrip("/").split("/")
    if len(parts) < 3 or parts[-1] != METADATA_FILE:
        return None
    m = _CHUNK_DIR.match(parts[-2])
    if m is None or m["video"] != parts[-3]:
        return None
    return ChunkRef(m["video"], int(m["index"]), location, "/".join(parts[:-1]) if in_tar else None)


def read_chunk(ref: ChunkRef | str | Path) -> tuple[Gamepad, ChunkMetadata]:
    """One chunk's labels and metadata, validated; raises LabelError naming the file and column on bad input."""
    if not isinstance(ref, ChunkRef):
        d = Path(ref)
        m = _CHUNK_DIR.match(d.name)
        ref = ChunkRef(m["video"] if m else d.name, int(m["index"]) if m else 0, str(d))
    if ref.member is None:
        labels_name, meta_name = f"{ref.path}/{LABELS_FILE}", f"{ref.path}/{METADATA_FILE}"
        try:
            labels, meta = Path(labels_name).read_bytes(), Path(meta_name).read_bytes()
        except FileNotFoundError as e:
            raise LabelError(f"{e.filename}: missing") from None
    else:
        labels_name, meta_name = f"{ref.name}/{LABELS_FILE}", f"{ref.name}/{METADATA_FILE}"
        with tarfile.open(ref.path) as tar:
            labels, meta = (_tar_bytes(tar, f"{ref.member}/{f}", ref.path) for f in (LABELS_FILE, METADATA_FILE))
    try:
        raw = json.loads(meta)
    except json.JSONDecodeError as e:
        raise LabelError(f"{meta_name}: not valid JSON ({e})") from None
    return parse_labels(labels, labels_name), ChunkMetadata.from_json(raw, meta_name)


def read_tar_chunks(
    stream: BinaryIO, tar_name: str
) -> Iterator[tuple[ChunkRef, tuple[Gamepad, ChunkMetadata] | LabelError]]:
    """Every chunk of a tar shard in one streaming pass (one decompression): (ref, (labels, metadata)) or (ref, the
    LabelError that makes the chunk unusable). A shard that breaks mid-way raises LabelError after the chunks
    before the break; files of a chunk wait in memory only until its other file arrives."""
    pending: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                folder, _, file = member.name.rstrip("/").rpartition("/")
                if file not in (LABELS_FILE, METADATA_FILE) or not member.isfile():
                    continue
                ref = _chunk_ref(f"{folder}/{METADATA_FILE}", tar_name, in_tar=True)
                if ref is None:
                    continue
                f = tar.extractfile(member)
                files = pending.setdefault(folder, {})
                files[file] = f.read() if f is not None else b""
                if len(files) == 2:
                    del pending[folder]
                    yield ref, _parse_chunk(files[LABELS_FILE], files[METADATA_FILE], ref.name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise LabelError(f"{tar_name}: unreadable tar shard ({e})") from None
    for folder, files in pending.items():
        ref = _chunk_ref(f"{folder}/{METADATA_FILE}", tar_name, in_tar=True)
        assert ref is not None
        (missing,) = {LABELS_FILE, METADATA_FILE} - set(files)
        yield ref, LabelError(f"{ref.name}/{missing}: missing")


def _parse_chunk(labels: bytes, meta: bytes, name: str) -> tuple[Gamepad, ChunkMetadata] | LabelError:
    try:
        try:
            raw = json.loads(meta)
        except json.JSONDecodeError as e:
            raise LabelError(f"{name}/{METADATA_FILE}: not valid JSON ({e})") from None
        return parse_labels(labels, f"{name}/{LABELS_FILE}"), ChunkMetadata.from_json(raw, f"{name}/{METADATA_FILE}")
    except LabelError as e:
        return e


def _tar_bytes(tar: tarfile.TarFile, member: str, tar_path: str) -> bytes:
    try:
        f = tar.extractfile(member)
    except KeyError:
        f = None
    if f is None:
        raise LabelError(f"{tar_path}:{member}: missing")
    return f.read()


def parse_labels(parquet: bytes, source: str) -> Gamepad:
    """`actions_raw.parquet` bytes -> Gamepad; `source` names the file in errors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(parquet))
    except (pa.ArrowException, OSError) as e:
        raise LabelError(f"{source}: not a readable parquet file ({e})") from None
    missing = [c for c in (*STANDARD_BUTTONS, *STICKS) if c not in table.column_names]
    if missing:
        raise LabelError(f"{source}: missing columns {missing} (has {table.column_names})")
    n = table.num_rows
    buttons = np.zeros((n, len(STANDARD_BUTTONS)), bool)
    for i, name in enumerate(STANDARD_BUTTONS):
        col = table.column(name)
        if col.null_count:
            raise LabelError(f"{source}: column {name!r} has {col.null_count} null values")
        if pa.types.is_boolean(col.type):
            buttons[:, i] = col.to_numpy()
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            v = col.to_numpy()
            bad = ~np.isin(v, (0, 1))
            if bad.any():
                r = int(np.argmax(bad))
                raise LabelError(f"{source}: column {name!r} row {r} = {v[r].item()!r}, expected a boolean (0/1)")
            buttons[:, i] = v.astype(bool)
        else:
            raise LabelError(f"{source}: column {name!r} has type {col.type}, expected bool")
    sticks = [_stick_column(table.column(s), s, n, source) for s in STICKS]
    return Gamepad(buttons, *sticks)


def _stick_column(col, name: str, n: int, source: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)) or not (
        pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)
    ):
        raise LabelError(f"{source}: column {name!r} has type {t}, expected a list of 2 floats [x, y]")
    if col.null_count:
        raise LabelError(f"{source}: column {name!r} has {col.null_count} null rows")
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if (lengths != 2).any():
        r = int(np.argmax(lengths != 2))
        raise LabelError(f"{source}: column {name!r} row {r} has {lengths[r]} values, expected [x, y]")
    v = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, 2)
    _check_sticks(v, name, source)
    return v


def _check_sticks(v: np.ndarray, name: str, source: str) -> None:
    bad = ~np.isfinite(v).all(axis=1) | (np.abs(v) > 1 + STICK_TOLERANCE).any(axis=1)
    if bad.any():
        r = int(np.argmax(bad))
        raise LabelError(f"{source}: column {name!r} row {r} = {v[r].tolist()}, expected finite [x, y] in [-1, 1]")


def iter_chunks(root: str | Path) -> Iterator[tuple[ChunkRef, Gamepad, ChunkMetadata]]:
    """(ref, gamepad, metadata) for every chunk under `root`, tar shards streamed once each; bad chunks raise
    LabelError."""
    root = Path(root)
    for tar_path in [root] if root.is_file() else sorted(root.rglob("*.tar*")):
        with open(tar_path, "rb") as f:
            for ref, got in read_tar_chunks(f, str(tar_path)):
                if isinstance(got, LabelError):
                    raise got
                yield (ref, *got)
    if root.is_dir():
        for ref in find_chunks(root):
            if ref.member is None:
                yield (ref, *read_chunk(ref))
