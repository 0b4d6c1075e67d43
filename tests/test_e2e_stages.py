"""The stage runner on real (short) recordings: done stages are skipped, changed settings re-run a stage and
everything that reads it, and a stage run alone names the stage it is missing."""

import dataclasses
import json

import pytest

from nitrogen_jax.e2e.extraction import score
from nitrogen_jax.e2e.record import RecordSettings
from nitrogen_jax.e2e.settings import E2ESettings
from nitrogen_jax.e2e.stage_record import read_stage
from nitrogen_jax.e2e.stages import run_all, run_stage


def small(seconds=1.0) -> E2ESettings:
    return E2ESettings(record=RecordSettings(videos_per_game=1, seconds=seconds, max_noop_start=5))


def test_done_stages_skip_and_changed_settings_rerun_downstream(tmp_path):
    said: list[str] = []
    first = run_all(tmp_path, small(), ("record", "extract"), say=said.append)
    assert [r.skipped for r in first] == [False, False]
    video = tmp_path / "record" / "videos" / "boxing_0000.mp4"
    stamp = video.stat().st_mtime_ns

    again = run_all(tmp_path, small(), ("record", "extract"), say=said.append)
    assert [r.skipped for r in again] == [True, True]
    assert video.stat().st_mtime_ns == stamp  # not re-recorded
    assert "skipped" in said[-1]

    changed = run_all(tmp_path, small(seconds=1.5), ("record", "extract"), say=said.append)
    assert [r.skipped for r in changed] == [False, False]  # extract re-runs because its input changed
    record = read_stage(tmp_path, "record")
    assert record is not None and record["summary"]["frames"] == 90
    accuracy = json.loads((tmp_path / "extract" / "accuracy.json").read_text())
    assert accuracy["frames"] == 90 and accuracy["method"] in ("truth", "overlay")

    s = small(seconds=1.5)
    only_extract = dataclasses.replace(s, extract=dataclasses.replace(s.extract, method="truth", workers=2))
    rerun = run_all(tmp_path, only_extract, ("record", "extract"), say=said.append)
    assert [r.skipped for r in rerun] == [True, False]


def test_a_stage_alone_needs_its_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="needs stage 'record'"):
        run_stage(tmp_path, "extract", small(), say=lambda _: None)
    with pytest.raises(ValueError, match="unknown stage"):
        run_stage(tmp_path, "deploy", small(), say=lambda _: None)


def test_recording_truth_layout_and_score(tmp_path):
    """The truth is in the public layout beside a real video; scoring it against itself is perfect and against a
    copy with one button flipped counts exactly that."""
    import shutil

    from nitrogen_jax.data.layout import find_chunks, read_chunk, write_chunks
    from nitrogen_jax.data.video import video_fps

    run_all(tmp_path, small(), ("record",), say=lambda _: None)
    truth = tmp_path / "record" / "truth"
    assert video_fps(tmp_path / "record" / "videos" / "boxing_0000.mp4") == 60
    (ref,) = find_chunks(truth)
    pad, meta = read_chunk(ref)
    assert len(pad) == 60 and meta.bbox_game_area == [0, 0, 320, 420]
    assert score(truth, truth)["exact_rows"] == 1.0
    flipped = tmp_path / "flipped"
    pad.buttons[10, 0] = ~pad.buttons[10, 0]
    write_chunks(flipped, "boxing_0000", pad, bbox_game_area=meta.bbox_game_area)
    s = score(truth, flipped)
    assert s["exact_rows"] == pytest.approx(59 / 60) and s["frames_covered"] == 1.0
    shutil.rmtree(flipped / "boxing_0000")
    assert score(truth, flipped)["frames_covered"] == 0.0
