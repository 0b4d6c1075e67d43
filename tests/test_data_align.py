"""Alignment by time: labels of a 60 fps / 1080p original on a 30 fps / 720p local copy, checked frame by frame.

Every frame of the local copy carries the number of the original frame it shows as 10 black/white blocks, which
survive the crop, resize and JPEG, so each written sample says which source frame it was made from."""

import av
import cv2
import numpy as np
import pytest

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.data.example import decode_sample
from nitrogen_jax.data.layout import LabelError, frame_box, write_chunks
from nitrogen_jax.data.pipeline import run_preprocess
from nitrogen_jax.data.preprocess import PreprocessConfig
from nitrogen_jax.data.tfrecord import scan_records
from nitrogen_jax.data.video import VideoError, VideoWriter, frames_at_times, probe_video, read_frames, write_video

BITS, W, H = 10, 1280, 720
OVERLAY_1080P = [1500, 800, 300, 200]  # x, y, w, h in the original's pixels: (1000, 533)-(1200, 667) at 720p
START_FRAME, ROWS = 60, 90  # labels start 1 s into the original, 1.5 s of 60 fps rows


def numbered_frame(source_frame: int) -> np.ndarray:
    img = np.full((H, W, 3), 90, np.uint8)
    for b in range(BITS):
        if source_frame >> b & 1:
            img[:200, b * 128 : (b + 1) * 128] = 255
        else:
            img[:200, b * 128 : (b + 1) * 128] = 0
    img[533:667, 1000:1200] = (255, 0, 255)  # the input overlay, where the 1080p box lands once scaled
    return img


def read_number(rgb: np.ndarray) -> int:
    """The source frame number drawn by numbered_frame, read from any resize of the full frame."""
    h, w = rgb.shape[:2]
    y = int(100 / H * h)
    return sum(1 << b for b in range(BITS) if rgb[y, int((b + 0.5) * 128 / W * w)].mean() > 128)


@pytest.fixture(scope="module")
def local_copy(tmp_path_factory):
    """A 30 fps, 720p copy (local frame k shows original frame 2k) and labels timed on the 60 fps, 1080p original."""
    root = tmp_path_factory.mktemp("align")
    video = write_video(root / "videos" / "vid.mp4", (numbered_frame(2 * k) for k in range(90)), 30)
    rng = np.random.default_rng(0)
    pad = Gamepad(rng.random((ROWS, 17)) < 0.5, rng.uniform(-1, 1, (ROWS, 2)), rng.uniform(-1, 1, (ROWS, 2)))
    write_chunks(
        root / "labels",
        "vid",
        pad,
        start_frame=START_FRAME,
        video_fps=60,
        resolution=(1080, 1920),
        bbox_controller_overlay=OVERLAY_1080P,
        chunk_size=60,
    )
    return root, video


@pytest.mark.parametrize("backend", ["av", "cv2"])
def test_frames_are_found_by_timestamp(local_copy, backend):
    _, video = local_copy
    times = 1.0 + np.arange(ROWS) / 60  # label rows of the 60 fps original
    got = list(frames_at_times(str(video), times, 30.0, backend))
    assert [k for k, _, _ in got] == list(range(ROWS))
    # row r is at original frame 60 + r; the 30 fps copy shows original frame 2 * floor((60 + r) / 2) then
    want = [2 * ((START_FRAME + r) // 2) for r in range(ROWS)]
    assert [read_number(f) for _, _, f in got] == want
    assert [i for _, i, _ in got] == [(START_FRAME + r) // 2 for r in range(ROWS)]


def test_pipeline_aligns_rows_and_scales_boxes(local_copy, tmp_path):
    root, _ = local_copy
    m = run_preprocess([root / "labels"], root / "videos", tmp_path, PreprocessConfig(density_threshold=0))
    samples = sorted(
        (decode_sample(d) for p in tmp_path.glob("*.tfrecord") for _, d in scan_records(p)), key=lambda s: s.label_row
    )
    assert m["counts"]["samples"] == len(samples) == ROWS and m["skipped"] == []
    for s in samples:
        img = cv2.imdecode(np.frombuffer(s.jpeg, np.uint8), cv2.IMREAD_COLOR_RGB)
        assert img is not None, s.label_row
        assert read_number(img) == 2 * ((START_FRAME + s.label_row) // 2), s.label_row  # the frame shown then
        assert s.frame_index == (START_FRAME + s.label_row) // 2
        # the 1080p overlay box scaled to 720p: (1000, 533)-(1200, 667) -> (200, 190)-(240, 237) at 256
        assert img[195:232, 204:236].max() < 40, "the overlay is blacked out"
        assert img[150:185, 100:190].mean() > 60, "and nothing else"


def test_a_box_that_does_not_fit_is_refused(local_copy, tmp_path):
    root, _ = local_copy
    with pytest.raises(LabelError, match=r"vid_chunk_0000: box \[1500, 800, 300, 200\] is \(1500, 800\)-\(1800, "):
        frame_box(OVERLAY_1080P, W, H, None, "vid_chunk_0000")
    assert frame_box(OVERLAY_1080P, W, H, (1080, 1920)) == (1000, 533, 1200, 667)
    labels = tmp_path / "labels"  # the same labels without the source resolution: the box is off the 720p frame
    write_chunks(labels, "vid", Gamepad.zeros(30), start_frame=60, video_fps=60, bbox_controller_overlay=OVERLAY_1080P)
    m = run_preprocess([labels], root / "videos", tmp_path / "out", PreprocessConfig(density_threshold=0))
    assert m["counts"]["chunks_skipped"] == 1 and m["counts"].get("samples", 0) == 0 and m["shards"] == []
    (skip,) = m["skipped"]
    assert "does not fit the 1280x720 frame" in skip["reason"] and "vid_chunk_0000" in skip["input"]
    with pytest.raises(Exception, match=r"box \[1500, 800, 300, 200\].*does not fit the 1280x720 frame"):
        run_preprocess([labels], root / "videos", tmp_path / "o2", PreprocessConfig(density_threshold=0, strict=True))


# ------------------------------------------------------------------------------------- the one video writer
@pytest.mark.parametrize("codec,kbps", [("h264", None), ("h264", 800), ("mp4v", None), ("mp4v", 800)])
def test_writer_round_trips_frames_through_the_readers(tmp_path, codec, kbps):
    """Every codec/backend (OpenCV mp4v, PyAV mpeg4 at a bitrate, libx264 at crf or a bitrate) gives back every
    frame, in order, to both readers."""
    frames = [cv2.resize(numbered_frame(k), (320, 180), interpolation=cv2.INTER_AREA) for k in range(20)]
    with VideoWriter(tmp_path / "sub" / "v.mp4", 30, bitrate_kbps=kbps, codec=codec) as w:  # sized lazily
        for f in frames:
            w.write(f)
    assert (w.codec, w.size, w.frames) == (codec, (320, 180), 20)
    info = probe_video(str(w.path))
    assert (info.fps, info.width, info.height) == (30.0, 320, 180)
    with av.open(str(w.path)) as c:
        assert c.streams.video[0].codec_context.name == {"h264": "h264", "mp4v": "mpeg4"}[codec]
    assert [read_number(f) for _, f in read_frames(w.path, range(20))] == list(range(20))
    got = list(frames_at_times(str(w.path), np.arange(20) / 30, 30.0))
    assert [read_number(f) for _, _, f in got] == list(range(20))


def test_writer_refuses_a_frame_of_another_size_or_dtype_naming_the_file(tmp_path):
    path = tmp_path / "v.mp4"
    with VideoWriter(path, 30, codec="mp4v") as w:
        w.write(np.zeros((64, 96, 3), np.uint8))
        with pytest.raises(VideoError, match=r"v\.mp4: frame 1 is 96x62; this video is 96x64"):
            w.write(np.zeros((62, 96, 3), np.uint8))
        with pytest.raises(VideoError, match=r"v\.mp4: frame 1 is float32"):
            w.write(np.zeros((64, 96, 3), np.float32))
    with pytest.raises(VideoError, match=r"odd\.mp4: video size must be positive and even"):
        VideoWriter(tmp_path / "odd.mp4", 30, (97, 64), codec="h264")  # OpenCV would crop it without a word
    with pytest.raises(ValueError, match="codec must be one of"):
        VideoWriter(path, 30, codec="vp9")


def test_write_video_of_no_frames_writes_no_file(tmp_path):
    assert not write_video(tmp_path / "empty.mp4", [], 30).exists()
