"""A small, real, deterministic dataset for tests and demos: Atari play (ale-py's bundled ROMs) as mp4 + labels.

Each game is played with sticky random actions at 60 fps (frameskip 1) and filmed the way creators film
gameplay: the 160x210 game sits in a 320x240 frame beside a "webcam" box, with an input-overlay panel that
shows the pressed buttons drawn over the game's lower-right corner. The actions taken are written as labels
in the public layout (`layout.write_chunks`), with the boxes in the metadata, and the video starts a few frames
before the labels so alignment by `start_frame` matters.

    ds = make_sample_dataset("/tmp/sample")                  # videos/*.mp4 + labels/<video_id>/...
    shards = make_sample_shards("/tmp/sample")               # runs the Beam preprocessing -> shards dir
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np

from nitrogen_jax.actions import STANDARD_BUTTONS, Gamepad
from nitrogen_jax.data.layout import write_chunks
from nitrogen_jax.data.video import write_video

FPS = 60.0
FRAME_H, FRAME_W = 240, 320
GAME_X, GAME_Y = 80, 15  # the 160x210 Atari screen's top-left corner in the video frame
GAME_AREA = {
    "xtl": GAME_X / FRAME_W,
    "ytl": GAME_Y / FRAME_H,
    "xbr": (GAME_X + 160) / FRAME_W,
    "ybr": (GAME_Y + 210) / FRAME_H,
}
OVERLAY = [200, 170, 112, 64]  # [x, y, w, h] pixels: overlaps the game's lower-right corner
WEBCAM = [8, 8, 56, 56]
ROM_NAMES = {"ms_pacman": "ms_pacman", "breakout": "breakout", "pong": "pong", "space_invaders": "space_invaders"}


@dataclasses.dataclass(frozen=True)
class SampleDataset:
    root: Path
    labels_dir: Path
    videos_dir: Path
    video_ids: tuple[str, ...]
    lead_in: int  # video frames before the first label row

    def gamepad(self, video_id: str) -> Gamepad:
        """The actions taken, one per label row (what the labels hold)."""
        d = np.load(self.root / f"{video_id}.actions.npz")
        return Gamepad(d["buttons"], d["j_left"], d["j_right"])


def atari_action_to_gamepad(name: str) -> tuple[np.ndarray, np.ndarray]:
    """An ALE action name ('UPLEFTFIRE') -> (buttons bool[17], left stick [x, y]): directions on the D-pad and the
    left stick (y positive downward, diagonals on the unit circle), FIRE on SOUTH."""
    buttons = np.zeros(len(STANDARD_BUTTONS), bool)
    x = ("RIGHT" in name) - ("LEFT" in name)
    y = ("DOWN" in name) - ("UP" in name)
    for flag, button in (
        (y < 0, "dpad_up"),
        (y > 0, "dpad_down"),
        (x < 0, "dpad_left"),
        (x > 0, "dpad_right"),
        ("FIRE" in name, "south"),
    ):
        buttons[STANDARD_BUTTONS.index(button)] = flag
    stick = np.array([x, y], np.float32)
    norm = np.linalg.norm(stick)
    return buttons, stick / norm if norm else stick


def play_atari(game: str, num_frames: int, seed: int, warmup: int = 120):
    """(frames RGB uint8 [N, 210, 160, 3], ALE action names [N]) with sticky random actions; frame i is what the
    player saw when choosing action i."""
    import ale_py
    from ale_py import roms

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setInt("random_seed", seed)
    ale.setInt("frame_skip", 1)
    ale.setFloat("repeat_action_probability", 0.0)
    rom = roms.get_rom_path(ROM_NAMES[game])
    if rom is None:
        raise FileNotFoundError(f"ale-py ships no ROM for {game!r}")
    ale.loadROM(rom)
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng(seed)
    for _ in range(warmup):
        ale.act(actions[0])
    frames, names, held, left = [], [], actions[0], 0
    for _ in range(num_frames):
        if left == 0:
            held, left = actions[rng.integers(len(actions))], int(rng.integers(4, 30))
        left -= 1
        frames.append(ale.getScreenRGB())
        names.append(held.name)
        ale.act(held)
        if ale.game_over():
            ale.reset_game()
    return np.stack(frames), names


def film(game_frame: np.ndarray, buttons: np.ndarray, stick: np.ndarray, webcam: np.ndarray) -> np.ndarray:
    """The game screen composed into a creator-style video frame with a webcam box and an input overlay."""
    frame = np.full((FRAME_H, FRAME_W, 3), 24, np.uint8)
    frame[GAME_Y : GAME_Y + 210, GAME_X : GAME_X + 160] = game_frame
    x, y, w, h = WEBCAM
    frame[y : y + h, x : x + w] = webcam
    x, y, w, h = OVERLAY
    frame[y : y + h, x : x + w] = (40, 40, 48)
    for i, pressed in enumerate(buttons):
        cx, cy = x + 10 + (i % 9) * 11, y + 10 + (i // 9) * 12
        cv2.circle(frame, (cx, cy), 4, (250, 220, 40) if pressed else (90, 90, 90), -1)
    cx, cy = x + w // 2, y + 46
    cv2.circle(frame, (cx, cy), 12, (90, 90, 90), 1)
    cv2.circle(frame, (int(cx + 9 * stick[0]), int(cy + 9 * stick[1])), 4, (240, 240, 240), -1)
    return frame


def make_sample_dataset(
    root: str | Path,
    *,
    games: tuple[str, ...] = ("ms_pacman", "breakout"),
    num_frames: int = 240,
    seed: int = 0,
    lead_in: int = 6,
    chunk_size: int = 100,
) -> SampleDataset:
    """Play each game, film it to `videos/<video_id>.mp4` (mp4v, 60 fps) and write its labels under `labels/`.

    chunk_size is smaller than the public 1200 rows so that a few hundred frames still span several chunks.
    """
    unknown = [g for g in games if g not in ROM_NAMES]
    if unknown or not games:
        raise ValueError(f"unknown sample games {unknown or games}; expected some of {sorted(ROM_NAMES)}")
    root = Path(root)
    labels_dir, videos_dir = root / "labels", root / "videos"
    ids = []
    for g, game in enumerate(games):
        video_id = f"atari_{game}_s{seed}"
        frames, names = play_atari(game, num_frames + lead_in, seed + g)
        mapped = [atari_action_to_gamepad(n) for n in names]
        buttons = np.stack([b for b, _ in mapped])
        sticks = np.stack([s for _, s in mapped])
        cam_rng = np.random.default_rng(seed + 1000 + g)
        webcam = cam_rng.integers(0, 255, (WEBCAM[3], WEBCAM[2], 3), dtype=np.uint8)
        write_video(
            videos_dir / f"{video_id}.mp4",
            (
                film(f, b, s, np.roll(webcam, i, axis=1))
                for i, (f, b, s) in enumerate(zip(frames, buttons, sticks, strict=False))
            ),
            FPS,
        )
        pad = Gamepad(buttons[lead_in:], sticks[lead_in:], np.zeros((num_frames, 2), np.float32))
        write_chunks(
            labels_dir,
            video_id,
            pad,
            fps=FPS,
            video_url=f"file://{videos_dir / video_id}.mp4",
            start_frame=lead_in,
            game=game,
            chunk_size=chunk_size,
            bbox_game_area=GAME_AREA,
            bbox_controller_overlay=OVERLAY,
            bbox_others=[WEBCAM],
            resolution=(FRAME_H, FRAME_W),
        )
        np.savez(root / f"{video_id}.actions.npz", buttons=pad.buttons, j_left=pad.j_left, j_right=pad.j_right)
        ids.append(video_id)
    return SampleDataset(root, labels_dir, videos_dir, tuple(ids), lead_in)


def make_sample_shards(
    root: str | Path,
    *,
    action_horizon: int = 18,
    layout: str = "release",
    num_frames: int = 240,
    seed: int = 0,
    games: tuple[str, ...] = ("ms_pacman", "breakout"),
    **config,
) -> Path:
    """The sample dataset preprocessed into `root/shards` (TFRecords + index + manifest.json); reused when the
    same arguments built it before. `config`: further `PreprocessConfig` fields."""
    from nitrogen_jax.data.pipeline import MANIFEST, run_preprocess
    from nitrogen_jax.data.preprocess import PreprocessConfig

    root = Path(root)
    cfg = PreprocessConfig(layout=layout, action_horizon=action_horizon, **config)
    key = json.dumps(
        {"cfg": dataclasses.asdict(cfg), "num_frames": num_frames, "seed": seed, "games": list(games)}, sort_keys=True
    )
    shards = root / "shards"
    if (shards / MANIFEST).exists() and (root / "sample.key").exists() and (root / "sample.key").read_text() == key:
        return shards
    ds = make_sample_dataset(root, games=games, num_frames=num_frames, seed=seed)
    run_preprocess([ds.labels_dir], ds.videos_dir, shards, cfg)
    (root / "sample.key").write_text(key)
    return shards
