"""The Beam preprocessing on the local runner, over real Atari videos: every written frame/chunk pair is checked
against the source video and the actions taken; bad inputs are skipped and counted, or fail under strict."""

import json
import os
import shutil

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nitrogen_jax.actions import RELEASE_LAYOUT, SEED_LAYOUT, STANDARD_BUTTONS, Gamepad
from nitrogen_jax.cli import main as cli_main
from nitrogen_jax.data.example import decode_sample
from nitrogen_jax.data.layout import write_chunks
from nitrogen_jax.data.pipeline import run_preprocess
from nitrogen_jax.data.preprocess import PreprocessConfig, encode_jpeg
from nitrogen_jax.data.sample_data import GAME_X, GAME_Y, OVERLAY, WEBCAM, make_sample_dataset
from nitrogen_jax.data.tfrecord import read_index, read_record, scan_records
from nitrogen_jax.data.video import write_video

H = 18


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    ds = make_sample_dataset(root)
    run_preprocess([ds.labels_dir], ds.videos_dir, root / "shards", PreprocessConfig(action_horizon=H))
    return ds, root / "shards"


def read_all(shards):
    out = []
    for path in sorted(shards.glob("*.tfrecord")):
        fd = os.open(path, os.O_RDONLY)
        try:
            out += [decode_sample(read_record(fd, int(o), int(n), str(path))) for o, n in read_index(path)]
        finally:
            os.close(fd)
    return out


def video_frames(path):
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def reference_frame(frame):
    """The training frame made independently: boxes blacked, game area cropped, INTER_AREA to 256."""
    frame = frame.copy()
    for x, y, w, h in (OVERLAY, WEBCAM):
        frame[y : y + h, x : x + w] = 0
    return cv2.resize(frame[GAME_Y : GAME_Y + 210, GAME_X : GAME_X + 160], (256, 256), interpolation=cv2.INTER_AREA)


def test_every_frame_and_chunk_matches_the_source(sample):
    ds, shards = sample
    samples = read_all(shards)
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["counts"]["samples"] == len(samples) == 480
    assert sum(s["records"] for s in manifest["shards"]) == 480 and manifest["skipped"] == []
    for video_id in ds.video_ids:
        frames = video_frames(ds.videos_dir / f"{video_id}.mp4")
        encoded = RELEASE_LAYOUT.encode(ds.gamepad(video_id))
        mine = sorted((s for s in samples if s.video_id == video_id), key=lambda s: s.label_row)
        assert [s.label_row for s in mine] == list(range(240))
        for s in mine:
            assert s.frame_index == s.label_row + ds.lead_in  # labels start `lead_in` frames into the video
            want = reference_frame(frames[s.frame_index])
            assert s.jpeg == encode_jpeg(want, 95), (video_id, s.label_row)  # exactly this frame, nothing else
            got = cv2.imdecode(np.frombuffer(s.jpeg, np.uint8), cv2.IMREAD_COLOR_RGB)
            assert got is not None, (video_id, s.label_row)
            assert np.abs(got.astype(int) - want).mean() < 8  # JPEG 4:2:0 loss on saturated Atari colours
            assert got[200:, 200:].max() < 40  # the input overlay is blacked out
            rows = s.label_row + np.arange(H)
            inside = rows < len(encoded)
            np.testing.assert_array_equal(s.action_mask, np.repeat(inside[:, None], 25, 1).astype(np.float32))
            np.testing.assert_array_equal(s.actions[inside], encoded[rows[inside]])
            assert not s.actions[~inside].any()
        # most neighbouring frames differ, so a one-frame misalignment would fail the byte comparison above
        differ = [
            np.any(reference_frame(frames[i]) != reference_frame(frames[i + 1]))
            for i in range(ds.lead_in, ds.lead_in + 239)
        ]
        assert np.mean(differ) > 0.5
    stats = manifest["action_stats"]
    assert stats["right_up"] == {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
    assert 0 < stats["dpad_left"]["mean"] < 1 and stats["j_left_x"]["min"] == 0.0 and stats["j_left_x"]["max"] == 1.0


def test_cli_seed_layout_resamples_to_30hz(sample, tmp_path):
    ds, _ = sample
    out = tmp_path / "seed"
    assert (
        cli_main(
            [
                "preprocess",
                "--labels",
                str(ds.labels_dir),
                "--videos",
                str(ds.videos_dir),
                "--out",
                str(out),
                "--layout",
                "seed",
                "--action-horizon",
                "16",
                "--action-fps",
                "30",
                "--action-shift",
                "1",
                "--frame-stride",
                "4",
                "--",
                "--runner=DirectRunner",
            ]
        )
        == 0
    )
    assert cli_main(["check-shards", str(out)]) == 0
    samples = read_all(out)
    assert len(samples) == 2 * 60 and {s.label_row % 4 for s in samples} == {0}
    s = next(x for x in samples if x.video_id == ds.video_ids[0] and x.label_row == 200)
    encoded = SEED_LAYOUT.encode(ds.gamepad(ds.video_ids[0]))
    rows = 200 + 2 * np.arange(1, 17)  # shift 1 step, one step = 2 label rows at 30 Hz
    np.testing.assert_array_equal(s.action_mask[:, 0], (rows < 240).astype(np.float32))
    np.testing.assert_array_equal(s.actions[rows < 240], encoded[rows[rows < 240]])


def active(pad):
    return pad.buttons.any(1) | (np.abs(np.concatenate([pad.j_left, pad.j_right], 1)) > 0.05).any(1)


@pytest.fixture(scope="module")
def bad_inputs(sample, tmp_path_factory):
    """Labels for five videos, each with a different problem or filter case, and their video map."""
    ds, _ = sample
    root = tmp_path_factory.mktemp("bad")
    labels = root / "labels"
    pacman = ds.gamepad(ds.video_ids[1])
    src_video = ds.videos_dir / f"{ds.video_ids[1]}.mp4"
    dpad = np.zeros((240, len(STANDARD_BUTTONS)), bool)
    dpad[:, STANDARD_BUTTONS.index("dpad_left")] = True
    half_idle = Gamepad(dpad & (np.arange(240) < 120)[:, None], np.zeros((240, 2)), np.zeros((240, 2)))
    write_chunks(labels, "idle", half_idle, start_frame=ds.lead_in, chunk_size=100)
    write_chunks(labels, "ghost", pacman, chunk_size=100)
    write_chunks(labels, "broken", pacman, chunk_size=100)
    write_chunks(labels, "short", Gamepad(dpad[:100], np.zeros((100, 2)), np.zeros((100, 2))))
    gappy = write_chunks(labels, "gappy", pacman, start_frame=ds.lead_in, chunk_size=100)
    t = pq.read_table(gappy[1] / "actions_raw.parquet")
    sticks = [[float("nan"), 0.0]] + t.column("j_left").to_pylist()[1:]
    pq.write_table(
        t.set_column(t.column_names.index("j_left"), "j_left", pa.array(sticks)), gappy[1] / "actions_raw.parquet"
    )
    t = pq.read_table(gappy[2] / "actions_raw.parquet")
    pq.write_table(t.drop_columns(["start"]), gappy[2] / "actions_raw.parquet")
    (labels / "SHARD_0001.tar.gz").write_bytes(b"\x1f\x8b not really a gzip tar")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    write_video(root / "short.mp4", video_frames(src_video)[:50], 60)
    vmap = {
        "idle": str(src_video),
        "broken": str(root / "broken.mp4"),
        "short": str(root / "short.mp4"),
        "gappy": str(src_video),
    }
    (root / "videos.json").write_text(json.dumps(vmap))
    return root, labels, pacman


def test_bad_inputs_are_skipped_and_counted(bad_inputs):
    root, labels, pacman = bad_inputs
    out = root / "shards"
    cfg = PreprocessConfig(action_horizon=H, density_window_s=1.0)
    m = run_preprocess([labels], root / "videos.json", out, cfg)
    c = m["counts"]
    assert (
        c["videos"] == 5 and c["videos_skipped"] == 2 and c["chunks_skipped"] == 2 and c["label_sources_skipped"] == 1
    )
    assert c["chunks_of_skipped_videos"] == 6  # ghost and broken: 3 chunks each
    assert c["samples_without_frame"] == 50  # short: 100 labelled rows, a 50-frame video
    reasons = {(s["kind"], os.path.basename(s["input"].split(":")[0].rstrip("/"))): s["reason"] for s in m["skipped"]}
    assert "no local video for video_id 'ghost'" in reasons[("videos_skipped", "ghost")]
    assert "OpenCV cannot open" in reasons[("videos_skipped", "broken.mp4")]
    assert "unreadable tar shard" in reasons[("label_sources_skipped", "SHARD_0001.tar.gz")]
    assert "ends before frame 99" in reasons[("samples_without_frame", "short.mp4")]
    assert "column 'j_left' row 0 = [nan, 0.0]" in reasons[("chunks_skipped", "gappy_chunk_0001")]
    assert "missing columns ['start']" in reasons[("chunks_skipped", "gappy_chunk_0002")]

    samples = read_all(out)
    by_video = {
        v: sorted((s for s in samples if s.video_id == v), key=lambda s: s.label_row)
        for v in ("idle", "short", "gappy")
    }
    # the idle video: the 1 s windows of its second half have no action and are dropped
    assert [s.label_row for s in by_video["idle"]] == list(range(120))
    assert [s.label_row for s in by_video["short"]] == list(range(50))
    # gappy keeps chunk 0 only, minus the 1 s windows where the sticky random play was mostly NOOP
    act = active(Gamepad(pacman.buttons[:100], pacman.j_left[:100], pacman.j_right[:100]))
    kept = [r for r in range(100) if act[r // 60 * 60 : r // 60 * 60 + 60].mean() >= 0.5]
    assert [s.label_row for s in by_video["gappy"]] == kept
    last = by_video["gappy"][-1]
    assert last.action_mask[:, 0].tolist() == [1.0] * (100 - last.label_row) + [0.0] * (H - 100 + last.label_row)
    assert c["label_rows"] == 240 + 100 + 100 and c["label_rows_kept"] == 120 + 100 + len(kept)
    assert m["kept_fraction"] == round(c["label_rows_kept"] / c["label_rows"], 6)
    assert c["samples"] == len(samples) == 120 + 50 + len(kept)


def test_strict_fails_on_the_first_bad_input(bad_inputs, tmp_path):
    root, labels, _ = bad_inputs
    with pytest.raises(Exception, match=r"SHARD_0001.tar.gz: unreadable tar shard"):
        run_preprocess(
            [labels], root / "videos.json", tmp_path / "strict", PreprocessConfig(action_horizon=H, strict=True)
        )
    only_short = tmp_path / "labels"
    shutil.copytree(labels / "short", only_short / "short")
    with pytest.raises(Exception, match=r"short.mp4: the video ends before frame 99"):
        run_preprocess(
            [only_short], root / "videos.json", tmp_path / "strict2", PreprocessConfig(action_horizon=H, strict=True)
        )


def test_sample_data_is_deterministic(sample, tmp_path):
    ds, shards = sample
    again = make_sample_dataset(tmp_path, num_frames=240)
    for v in ds.video_ids:
        assert (again.videos_dir / f"{v}.mp4").read_bytes() == (ds.videos_dir / f"{v}.mp4").read_bytes()
        np.testing.assert_array_equal(again.gamepad(v).buttons, ds.gamepad(v).buttons)
    assert all(len(list(scan_records(p))) == 240 for p in shards.glob("*.tfrecord"))


def test_preprocess_targets_come_from_flags_then_preset_then_defaults():
    from nitrogen_jax.cli import parse

    def targets(*flags):
        c = parse(["preprocess", "--labels", "l", "--videos", "v", "--out", "o", *flags]).config
        return c.layout, c.action_horizon, c.action_fps

    assert targets() == ("release", 18, 60.0)
    assert targets("--preset", "seed") == ("seed", 16, 30.0)
    assert targets("--preset", "seed", "--action-horizon", "8") == ("seed", 8, 30.0)
