"""The public label layout: write/read round trips (folders and tar shards), metadata, and bad-label errors."""

import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nitrogen_jax.actions import STANDARD_BUTTONS, Gamepad
from nitrogen_jax.data.layout import LabelError, box_pixels, find_chunks, read_chunk, write_chunks


def random_pad(t, seed=0):
    rng = np.random.default_rng(seed)
    return Gamepad(rng.random((t, 17)) < 0.3, rng.uniform(-1, 1, (t, 2)), rng.uniform(-1, 1, (t, 2)))


def test_round_trip_splits_into_public_chunks(tmp_path):
    pad = random_pad(2500)
    dirs = write_chunks(
        tmp_path,
        "vidA",
        pad,
        video_url="https://example.org/v",
        start_frame=90,
        game="Pong",
        video_fps=30,
        bbox_controller_overlay=[10, 20, 30, 40],
        bbox_others=[[0, 0, 5, 5]],
    )
    assert [d.name for d in dirs] == ["vidA_chunk_0000", "vidA_chunk_0001", "vidA_chunk_0002"]
    assert {p.name for p in dirs[0].iterdir()} == {"actions_raw.parquet", "metadata.json"}
    table = pq.read_table(dirs[0] / "actions_raw.parquet")
    assert table.num_rows == 1200 and set(table.column_names) == {*STANDARD_BUTTONS, "j_left", "j_right"}
    assert all(pa.types.is_boolean(table.schema.field(b).type) for b in STANDARD_BUTTONS)
    raw = json.loads((dirs[1] / "metadata.json").read_text())
    # chunk 1 starts 1200 label rows (20 s) later: 600 frames of the 30 fps video after frame 90
    assert raw["original_video"] == {
        "url": "https://example.org/v",
        "start_frame": 690,
        "start_time": 23.0,
        "fps": 30.0,
    }
    assert raw["chunk_size"] == 1200 and raw["game"] == "Pong" and raw["bbox_controller_overlay"] == [10, 20, 30, 40]

    refs = find_chunks(tmp_path)
    assert [(r.video_id, r.index) for r in refs] == [("vidA", 0), ("vidA", 1), ("vidA", 2)]
    got = [read_chunk(r) for r in refs]
    assert [len(g) for g, _ in got] == [1200, 1200, 100]
    back = Gamepad(*(np.concatenate([getattr(g, f) for g, _ in got]) for f in ("buttons", "j_left", "j_right")))
    np.testing.assert_array_equal(back.buttons, pad.buttons)
    np.testing.assert_array_equal(back.j_left, pad.j_left)
    np.testing.assert_array_equal(back.j_right, pad.j_right)
    meta = got[2][1]
    assert (meta.start_frame, meta.start_time, meta.video_fps, meta.game) == (1290, 43.0, 30.0, "Pong")
    assert meta.bbox_others == ([0, 0, 5, 5],)


def test_reads_chunks_inside_tar_shards(tmp_path):
    pad = random_pad(300, seed=1)
    write_chunks(tmp_path / "tree", "vidB", pad, chunk_size=120)
    shard = tmp_path / "SHARD_0000.tar.gz"
    with tarfile.open(shard, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "vidB", arcname="SHARD_0000/vidB")
    refs = find_chunks(shard)
    assert [(r.index, r.member) for r in refs] == [
        (0, "SHARD_0000/vidB/vidB_chunk_0000"),
        (1, "SHARD_0000/vidB/vidB_chunk_0001"),
        (2, "SHARD_0000/vidB/vidB_chunk_0002"),
    ]
    g, meta = read_chunk(refs[2])
    np.testing.assert_array_equal(g.j_left, pad.j_left[240:])
    assert meta.start_frame == 240


def test_box_forms():
    assert box_pixels({"xtl": 0.25, "ytl": 0.5, "xbr": 0.75, "ybr": 1.0}, 320, 240) == (80, 120, 240, 240)
    assert box_pixels([10, 20, 30, 40], 320, 240) == (10, 20, 40, 60)
    assert box_pixels([0.0, 0.0, 0.5, 0.5], 320, 240) == (0, 0, 160, 120)
    assert box_pixels([300, 200, 100, 100], 320, 240) == (300, 200, 320, 240)  # clipped to the frame
    assert box_pixels(None, 320, 240) is None


def _rewrite(chunk_dir, fn):
    path = chunk_dir / "actions_raw.parquet"
    pq.write_table(fn(pq.read_table(path)), path)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.drop_columns(["dpad_up"]), r"missing columns \['dpad_up'\]"),
        (
            lambda t: t.set_column(t.column_names.index("south"), "south", pa.array(["x"] * t.num_rows)),
            r"column 'south' has type string, expected bool",
        ),
        (
            lambda t: t.set_column(t.column_names.index("east"), "east", pa.array([2] * t.num_rows)),
            r"column 'east' row 0 = 2, expected a boolean",
        ),
        (
            lambda t: t.set_column(
                t.column_names.index("j_left"),
                "j_left",
                pa.array([[float("nan"), 0.0]] + [[0.0, 0.0]] * (t.num_rows - 1)),
            ),
            r"column 'j_left' row 0 = \[nan, 0.0\], expected finite",
        ),
        (
            lambda t: t.set_column(
                t.column_names.index("j_right"), "j_right", pa.array([[0.0, 0.0, 1.0]] * t.num_rows)
            ),
            r"column 'j_right' row 0 has 3 values, expected \[x, y\]",
        ),
        (
            lambda t: t.set_column(t.column_names.index("j_right"), "j_right", pa.array([[0.0, 3.0]] * t.num_rows)),
            r"column 'j_right' row 0 = \[0.0, 3.0\]",
        ),
    ],
)
def test_bad_labels_name_file_and_column(tmp_path, edit, message):
    (chunk,) = write_chunks(tmp_path, "vidC", random_pad(50))
    path = _rewrite(chunk, edit)
    with pytest.raises(LabelError, match=message) as e:
        read_chunk(chunk)
    assert str(path) in str(e.value)


def test_bad_metadata_and_missing_files(tmp_path):
    (chunk,) = write_chunks(tmp_path, "vidD", random_pad(10))
    meta = json.loads((chunk / "metadata.json").read_text())
    del meta["original_video"]["start_frame"]
    (chunk / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(LabelError, match=r"metadata.json: metadata field original_video.start_frame is missing"):
        read_chunk(chunk)
    (chunk / "metadata.json").write_text("{not json")
    with pytest.raises(LabelError, match="not valid JSON"):
        read_chunk(chunk)
    (chunk / "actions_raw.parquet").unlink()
    with pytest.raises(LabelError, match=r"actions_raw.parquet: missing"):
        read_chunk(chunk)
    with pytest.raises(ValueError, match="NaN|expected finite"):
        write_chunks(
            tmp_path, "vidE", Gamepad(np.zeros((2, 17), bool), np.array([[np.nan, 0.0], [0.0, 0.0]]), np.zeros((2, 2)))
        )
