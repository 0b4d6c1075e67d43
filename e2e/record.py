"""Film a scripted player: real game frames beside a rendered input overlay, as compressed video, with the truth
(what was pressed, frame by frame) written aside in the public label layout, only for scoring the extraction.

The frame layout is a streamer's: the game scaled up by an integer factor on the left, the overlay on the right,
so masking the overlay out in preprocessing hides no game pixels. Video frame i shows the game before action i and
the overlay showing action i, so label row i belongs to video frame i (as in the public data).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.data.layout import write_chunks
from nitrogen_jax.data.overlay.render import PadState, composite, render_premultiplied
from nitrogen_jax.data.overlay.styles import canonical_size, get_style
from nitrogen_jax.data.video import VideoWriter
from nitrogen_jax.e2e.players import RandomPlayer, make_player

RECORDING_FILE = "recording.json"


@dataclasses.dataclass(frozen=True)
class RecordSettings:
    """What the recordings are: which games, how much play, how it is filmed."""

    games: tuple[str, ...] = ("ale:Boxing",)
    """Games to record (each needs a scripted player in e2e.players)."""
    videos_per_game: int = 8
    """Recordings per game; recording i starts from reset seed `seed + i`."""
    seconds: float = 20.0
    """Length of each recording (60 game frames per second)."""
    style: str = "xbox_filled_dark"
    """Overlay style drawn beside the game (data.overlay.styles)."""
    game_scale: int = 2
    """Integer upscaling of the native game frame in the video."""
    overlay_scale: float = 0.75
    """Overlay size relative to its template."""
    noise: float = 0.05
    """Chance per decision that the player mashes a random input for a few frames instead (varied starts and
    recoveries in the data)."""
    max_noop_start: int = 60
    """Each recording starts with 0..this many frames of released input (varied starts: Atari games are
    deterministic given the input)."""
    bitrate_kbps: int | None = None
    """H.264 bitrate; None: constant quality (crf 23)."""
    seed: int = 0


def pad_state(pad: Gamepad) -> PadState:
    """A one-frame Gamepad -> what the overlay draws (triggers full when their button is pressed)."""
    buttons = pad.buttons[0]
    from nitrogen_jax.data.overlay.render import BUTTON_INDEX

    triggers = np.array([buttons[BUTTON_INDEX["left_trigger"]], buttons[BUTTON_INDEX["right_trigger"]]], np.float32)
    return PadState(buttons, pad.j_left[0], pad.j_right[0], triggers)


class NoisyPlayer:
    """A scripted player that now and then hands over to a random one for a few frames."""

    def __init__(self, game: str, noise: float, seed: int):
        self.player, self.random = make_player(game), RandomPlayer(game, seed=seed, hold=(4, 16))
        self.noise, self._rng, self._random_left = noise, np.random.default_rng(seed + 7919), 0

    def act(self, ram: np.ndarray, frame: int) -> Gamepad:
        if self._random_left <= 0 and self._rng.random() < self.noise / 8:  # decisions are ~8 frames apart
            self._random_left = int(self._rng.integers(4, 16))
        if self._random_left > 0:
            self._random_left -= 1
            return self.random.act(ram, frame)
        return self.player.act(ram, frame)


def layout_boxes(native_hw: tuple[int, int], s: RecordSettings) -> tuple[tuple[int, int], list[int], list[int]]:
    """((width, height) of the video, game box [x, y, w, h], overlay box [x, y, w, h]) in video pixels."""
    gh, gw = native_hw[0] * s.game_scale, native_hw[1] * s.game_scale
    ow, oh = (int(np.ceil(v * s.overlay_scale)) for v in canonical_size(get_style(s.style).family))
    width, height = gw + ow + 8, max(gh, oh)
    width, height = width + width % 2, height + height % 2
    return (width, height), [0, 0, gw, gh], [gw + 4, (height - oh) // 2, ow, oh]


def record_one(game: str, video_id: str, seed: int, s: RecordSettings, videos: Path, truth: Path) -> dict:
    """Play `s.seconds` of `game` from reset seed `seed`, film it to videos/<video_id>.mp4, truth labels aside."""
    from nitrogen_jax.sim_bridge.games import make_env

    n = int(round(s.seconds * 60))
    style = get_style(s.style)
    player = NoisyPlayer(game, s.noise, seed)
    noop = int(np.random.default_rng(seed).integers(0, s.max_noop_start + 1))
    pads: list[Gamepad] = []
    rewards, episodes = 0.0, 1
    with make_env(game) as env:
        env.reset(seed=seed)
        for _ in range(noop):
            env.step(Gamepad.zeros(1))
        native = env.render()
        size, game_box, overlay_box = layout_boxes(native.shape[:2], s)
        writer = VideoWriter(videos / f"{video_id}.mp4", 60.0, size, s.bitrate_kbps, codec="h264")
        background = np.full((size[1], size[0], 3), 18, np.uint8)
        try:
            for i in range(n):
                pad = player.act(env.ram(), i)
                frame = background.copy()
                x, y, w, h = game_box
                frame[y : y + h, x : x + w] = cv2.resize(native, (w, h), interpolation=cv2.INTER_NEAREST)
                frame, _ = composite(
                    frame,
                    render_premultiplied(style, pad_state(pad)),
                    x=overlay_box[0],
                    y=overlay_box[1],
                    scale=s.overlay_scale,
                    opacity=1.0,
                    premultiplied=True,
                )
                writer.write(frame)
                pads.append(pad)
                _, reward, terminated, truncated, _ = env.step(pad)
                rewards += reward
                if terminated or truncated:
                    env.reset(seed=seed + 10_000 * episodes)
                    episodes += 1
                native = env.render()
        finally:
            writer.close()
    gamepad = Gamepad(
        np.concatenate([p.buttons for p in pads]),
        np.concatenate([p.j_left for p in pads]),
        np.concatenate([p.j_right for p in pads]),
    )
    write_chunks(
        truth,
        video_id,
        gamepad,
        fps=60.0,
        video_url=f"file://{(videos / f'{video_id}.mp4').absolute()}",
        game=game,
        bbox_game_area=game_box,
        bbox_controller_overlay=overlay_box,
        resolution=(size[1], size[0]),
    )
    return {
        "video_id": video_id,
        "game": game,
        "seed": seed,
        "frames": n,
        "noop_start": noop,
        "reward": rewards,
        "episodes": episodes,
        "size": list(size),
        "bbox_game_area": game_box,
        "bbox_controller_overlay": overlay_box,
        "style": s.style,
        "codec": writer.codec,
    }


def record(out: str | Path, s: RecordSettings, progress: bool = True) -> list[dict]:
    """All recordings of `s` into `out/videos` and `out/truth`; a `recording.json` list describes them."""
    out = Path(out)
    videos, truth = out / "videos", out / "truth"
    videos.mkdir(parents=True, exist_ok=True)
    jobs = [(g, i) for g in s.games for i in range(s.videos_per_game)]
    done = []
    for game, i in tqdm(jobs, desc="record", unit="video", disable=not progress):
        name = game.split(":")[1].lower()
        done.append(record_one(game, f"{name}_{s.seed + i:04d}", s.seed + i, s, videos, truth))
    (out / RECORDING_FILE).write_text(json.dumps(done, indent=1))
    return done
