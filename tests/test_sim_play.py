"""The play loop on the real emulators: chunk execution, recordings in the dataset layout, the `play` command."""

import cv2
import numpy as np
import pytest

from nitrogen_jax.cli import main
from nitrogen_jax.data.layout import iter_chunks
from nitrogen_jax.sim_bridge.agent import RandomAgent
from nitrogen_jax.sim_bridge.games import make_env
from nitrogen_jax.sim_bridge.play import play
from nitrogen_jax.sim_bridge.recorder import SessionRecorder


def _video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])
    cap.release()
    return np.stack(frames)


def test_recording_holds_the_executed_actions_and_frames(tmp_path):
    """Labels row i == the i-th executed action (the first k of each chunk); video frame i == the frame seen."""
    k, n = 7, 100
    with make_env("ale:Breakout") as env:
        recorder = SessionRecorder(tmp_path, "breakout_test", "Breakout")
        first_frame = None
        obs, _ = env.reset(seed=0)
        first_frame = env.render().copy()
        result = play(env, RandomAgent(seed=3), n, execute=k, recorder=recorder, seed=0, progress=False)
        chunks = recorder.close()
    assert result.frames == n and result.predictions == -(-n // k) and len(chunks) == 1
    expected = RandomAgent(seed=3)
    executed = [expected.act(np.zeros((1, 1)))[0] for _ in range(result.predictions)]
    buttons = np.concatenate([c.buttons[:k] for c in executed])[:n]
    j_left = np.concatenate([c.j_left[:k] for c in executed])[:n]
    ((_, labels, meta),) = list(iter_chunks(tmp_path / "actions"))
    np.testing.assert_array_equal(labels.buttons, buttons)
    np.testing.assert_allclose(labels.j_left, j_left, atol=1e-6)
    assert meta.game == "Breakout" and meta.video_url.endswith("videos/breakout_test.mp4") and meta.label_fps == 60
    video = _video(recorder.video_path)
    assert video.shape == (n, 210, 160, 3)
    assert np.abs(video[0].astype(int) - first_frame).mean() < 8  # mp4v is lossy, not wrong


def test_play_command_retro_with_visualiser(tmp_path):
    out = tmp_path / "play"
    rc = main(
        [
            "play",
            "--env",
            "retro:Airstriker-Genesis",
            "--preset",
            "tiny",
            "--frames",
            "120",
            "--execute",
            "9",
            "--temperature",
            "0.7",
            "--visualize",
            "--video-id",
            "air",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert _video(out / "videos" / "air.mp4").shape == (120, 224, 320, 3)
    assert _video(out / "videos" / "air_actions.mp4").shape == (120, 384, 768, 3)
    ((_, labels, meta),) = list(iter_chunks(out / "actions"))
    assert len(labels) == 120 and meta.game == "Airstriker-Genesis"
    assert not labels.buttons[:, [0, 6, 15]].any()  # back, guide, start: menus are masked by default


def test_play_command_ale_and_bad_arguments(tmp_path, capsys):
    assert main(["play", "--env", "ale:Pong", "--preset", "tiny", "--frames", "60", "--no-record"]) == 0
    assert "60 frames" in capsys.readouterr().out
    assert main(["play", "--env", "snes:Mario", "--preset", "tiny", "--no-record"]) == 2
    assert "retro:<Game>" in capsys.readouterr().err
    with make_env("ale:Pong") as env, pytest.raises(ValueError, match=r"execute must be in \[1, 18\]"):
        play(env, RandomAgent(), 60, execute=40, progress=False)
