"""Synthetic overlay videos: real gameplay played by a scripted player, an input overlay composited on it, written
as real compressed video with the per-frame truth beside it (`<video>.truth.npz`).

The player's input stream drives the game (ALE Atari games, stable-retro's Airstriker), so the background reacts
to the actions as in a real recording; the overlay shows the same stream `lag_ms` late, as capture software does.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from nitrogen_jax.actions import STANDARD_BUTTONS, Gamepad
from nitrogen_jax.data.overlay.render import (
    BUTTON_INDEX,
    N_BUTTONS,
    PadState,
    composite,
    render_premultiplied,
    stack_states,
    unstack_states,
)
from nitrogen_jax.data.overlay.styles import canonical_size, get_style
from nitrogen_jax.data.video import VideoWriter

TRAIN_GAMES: tuple[str, ...] = (
    "ale:breakout",
    "ale:ms_pacman",
    "ale:space_invaders",
    "ale:seaquest",
    "ale:freeway",
    "ale:asterix",
    "retro:Airstriker-Genesis",
)
HELDOUT_GAMES: tuple[str, ...] = ("ale:pong", "ale:enduro", "ale:riverraid")
GAMES: tuple[str, ...] = TRAIN_GAMES + HELDOUT_GAMES
GAME_HZ = 60.0  # the consoles' frame rate: a 30 fps video advances the game two frames per video frame
_TRIGGERS = (BUTTON_INDEX["left_trigger"], BUTTON_INDEX["right_trigger"])
_DIGITAL = [i for i in range(N_BUTTONS) if i not in _TRIGGERS]


# ----------------------------------------------------------------------------------------- the scripted player
def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3 - 2 * t)


def _stick_path(n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """float32 [n, 2]: rests at centre, flicks to full deflection (circle and corners), slow sweeps; eased moves."""
    out = np.zeros((n, 2), np.float32)
    i, pos = 0, np.zeros(2)
    while i < n:
        kind = rng.choice(["rest", "full", "corner", "partial"], p=[0.25, 0.35, 0.15, 0.25])
        if kind == "rest":
            target = np.zeros(2)
        elif kind == "full":
            a = rng.uniform(0, 2 * np.pi)
            target = np.array([np.cos(a), np.sin(a)])
        elif kind == "corner":
            target = rng.choice([-1.0, 1.0], 2)
        else:
            target = rng.uniform(-0.8, 0.8, 2)
        move = max(1, int(rng.uniform(0.08, 0.4) * fps))
        hold = int(rng.uniform(0.05, 0.6) * fps)
        t = _smoothstep(np.linspace(0, 1, move + 1)[1:])[:, None]
        seg = np.concatenate([pos + (target - pos) * t, np.repeat(target[None], hold, 0)])
        out[i : i + len(seg)] = seg[: n - i]
        i += len(seg)
        pos = target
    return out


def _trigger_path(n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """float32 [n]: ramps up to a level (often full), holds, ramps down; idle between pulls."""
    out = np.zeros(n, np.float32)
    i = int(rng.uniform(0, 1.0) * fps)
    while i < n:
        level = 1.0 if rng.random() < 0.5 else rng.uniform(0.2, 1.0)
        up, hold, down = (max(1, int(rng.uniform(a, b) * fps)) for a, b in ((0.03, 0.3), (0.05, 0.8), (0.03, 0.3)))
        seg = np.concatenate(
            [np.linspace(0, level, up + 1)[1:], np.full(hold, level), np.linspace(level, 0, down + 1)[1:]]
        )
        out[i : i + len(seg)] = seg[: n - i]
        i += len(seg) + int(rng.exponential(1.0) * fps)
    return out


def random_pad_stream(n: int, fps: float, rng: np.random.Generator) -> list[PadState]:
    """A player's plausible input over `n` frames at `fps`: presses with durations (taps to long holds, chords),
    smooth stick paths incl. full deflection, trigger ramps. Every button is pressed at least once when n allows."""
    buttons = np.zeros((n, N_BUTTONS), bool)
    for b in _DIGITAL:
        rate = rng.uniform(0.2, 1.5)  # presses per second
        starts = np.flatnonzero(rng.random(n) < rate / fps).tolist()
        starts.append(int(rng.integers(0, max(n - 1, 1))))  # every button at least once
        for s in starts:
            buttons[s : s + max(2, int((rng.exponential(0.25) + 0.05) * fps)), b] = True
    triggers = np.stack([_trigger_path(n, fps, rng), _trigger_path(n, fps, rng)], 1)
    for side, t in enumerate(rng.integers(0, max(n - 1, 1), 2)):  # every trigger at least once past the threshold
        if triggers[:, side].max() <= 0.5:
            triggers[t : t + max(2, int(0.2 * fps)), side] = 1.0
    buttons[:, _TRIGGERS] = triggers > 0.5
    j_left, j_right = _stick_path(n, fps, rng), _stick_path(n, fps, rng)
    return [PadState(buttons[i], j_left[i], j_right[i], triggers[i]) for i in range(n)]


# ----------------------------------------------------------------------------------------------- backgrounds
def gameplay_frames(game: str, actions: list[PadState], fps: float, seed: int) -> Iterator[np.ndarray]:
    """Native RGB frames of `game` (a `make_env` spec) played with `actions`, one per video frame; the game runs at
    60 Hz, so a video frame may advance several game frames with the same input."""
    from nitrogen_jax.sim_bridge.games import make_env

    if game not in GAMES:
        raise ValueError(f"unknown game {game!r}; expected one of {GAMES}")
    env = make_env(game)
    try:
        env.reset(seed=seed)
        warm = np.random.default_rng(seed).integers(30, 150)  # skip the black start screens
        for _ in range(warm):
            env.step(Gamepad.zeros(1))
        per_frame = max(1, round(GAME_HZ / fps))
        for state in actions:
            pad = Gamepad(state.buttons[None], state.j_left[None], state.j_right[None])
            for _ in range(per_frame):
                _, _, terminated, truncated, _ = env.step(pad)
                if terminated or truncated:
                    env.reset(seed=seed)
            yield env.render()
    finally:
        env.close()


# ------------------------------------------------------------------------------------------------ distractors
_CHAT = [
    "gg",
    "lol",
    "nice!",
    "what game is this",
    "PogChamp",
    "first",
    "go left!!",
    "how long is this run",
    "that was close",
    "W",
    "hi from Brazil",
    "!discord",
    "clip it",
    "o7",
    "KEKW",
    "is this the new patch",
]
_NAMES = ["pixel_kat", "xXsniperXx", "mod_bot", "lurker42", "retroFan", "zed", "noodle", "speedy_g"]


@dataclasses.dataclass(frozen=True)
class _Box:
    x: int
    y: int
    w: int
    h: int

    def overlaps(self, other: _Box, pad: int = 6) -> bool:
        return not (
            self.x + self.w + pad <= other.x
            or other.x + other.w + pad <= self.x
            or self.y + self.h + pad <= other.y
            or other.y + other.h + pad <= self.y
        )


def _place(rng, size, w, h, avoid: list[_Box]) -> _Box | None:
    for _ in range(40):
        box = _Box(int(rng.integers(0, size[0] - w + 1)), int(rng.integers(0, size[1] - h + 1)), w, h)
        if not any(box.overlaps(a) for a in avoid):
            return box
    return None


class Distractors:
    """Stream clutter that moves and changes like an overlay does (so the localiser must not match on it): a chat
    box with scrolling messages, an alert banner that slides in, a webcam rectangle with a moving figure."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], avoid: list[_Box], fps: float):
        self.rng, self.fps = rng, fps
        self.chat = _place(rng, size, int(size[0] * 0.26), int(size[1] * 0.38), avoid)
        self.cam = _place(rng, size, int(size[0] * 0.2), int(size[0] * 0.15), avoid + [b for b in [self.chat] if b])
        self.banner = _place(
            rng, size, int(size[0] * 0.4), int(size[1] * 0.1), avoid + [b for b in (self.chat, self.cam) if b]
        )
        self.messages = [
            (str(rng.choice(_NAMES)), str(rng.choice(_CHAT)), tuple(int(c) for c in rng.integers(90, 256, 3)))
            for _ in range(64)
        ]
        self.banner_at = int(rng.uniform(0.2, 2.0) * fps)
        self.cam_bg = tuple(int(c) for c in rng.integers(30, 120, 3))

    def draw(self, frame: np.ndarray, i: int) -> None:
        if self.chat:
            b = self.chat
            roi = frame[b.y : b.y + b.h, b.x : b.x + b.w]
            roi[:] = (roi * 0.35 + 12).astype(np.uint8)
            first = i * 2 // int(self.fps)  # a new message every half second
            for row in range(max(1, b.h // 14)):
                name, text, color = self.messages[(first + row) % len(self.messages)]
                y = b.y + 12 + row * 14
                cv2.putText(frame, name + ":", (b.x + 4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.33, color, 1, cv2.LINE_AA)
                cv2.putText(
                    frame,
                    text,
                    (b.x + 8 + 6 * len(name), y),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.33,
                    (235, 235, 235),
                    1,
                    cv2.LINE_AA,
                )
        if self.cam:
            b = self.cam
            frame[b.y : b.y + b.h, b.x : b.x + b.w] = self.cam_bg
            t = i / self.fps
            cx, cy = b.x + b.w / 2 + b.w * 0.12 * np.sin(1.3 * t), b.y + b.h * 0.45 + b.h * 0.04 * np.sin(2.1 * t)
            cv2.ellipse(
                frame,
                (int(cx), int(b.y + b.h * 1.05)),
                (int(b.w * 0.32), int(b.h * 0.35)),
                0,
                180,
                360,
                (60, 60, 90),
                -1,
                cv2.LINE_AA,
            )
            cv2.circle(frame, (int(cx), int(cy)), int(b.h * 0.2), (205, 160, 130), -1, cv2.LINE_AA)
            cv2.rectangle(frame, (b.x, b.y), (b.x + b.w - 1, b.y + b.h - 1), (200, 200, 200), 1)
        if self.banner and self.banner_at <= i < self.banner_at + int(2.0 * self.fps):
            b = self.banner
            slide = min(1.0, (i - self.banner_at) / (0.3 * self.fps))
            x = int(b.x - (1 - slide) * (b.x + b.w))
            cv2.rectangle(frame, (x, b.y), (x + b.w, b.y + b.h), (140, 60, 220), -1, cv2.LINE_AA)
            cv2.putText(
                frame,
                f"NEW FOLLOWER: {self.messages[0][0]}!",
                (x + 8, b.y + b.h * 2 // 3),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )


# ------------------------------------------------------------------------------------------------ the videos
@dataclasses.dataclass(frozen=True)
class SynthVideo:
    """A synthetic overlay video and its truth. truth[i]: what the overlay shows in video frame i (lag applied);
    actions[i]: what the player pressed (what the game received) at frame i. With has_overlay False, truth is
    empty, the affine zero and bbox_overlay (0, 0, 0, 0). Boxes are [x, y, w, h] in video pixels."""

    path: Path
    fps: float
    width: int
    height: int
    style: str
    family: str
    truth: list[PadState]
    actions: list[PadState]
    overlay_affine: np.ndarray
    bbox_overlay: tuple[int, int, int, int]
    bbox_game: tuple[int, int, int, int]
    has_overlay: bool
    game: str = ""
    lag_frames: int = 0
    opacity: float = 1.0
    scale: float = 1.0
    bitrate_kbps: int | None = None
    codec: str = "h264"

    @property
    def num_frames(self) -> int:
        return len(self.actions)


def truth_path(video: str | Path) -> Path:
    return Path(f"{video}.truth.npz")


def _game_box(rng: np.random.Generator, size: tuple[int, int], native: tuple[int, int]) -> _Box:
    """Where the game sits: full-frame stretched, or a 4:3 (or native-aspect) picture centred or to one side."""
    w, h = size
    mode = rng.choice(["full", "center", "side"], p=[0.35, 0.4, 0.25])
    if mode == "full":
        return _Box(0, 0, w, h)
    aspect = 4 / 3 if rng.random() < 0.6 else native[0] / native[1]
    gh = int(h * rng.uniform(0.8, 1.0))
    gw = min(w, int(gh * aspect))
    x = (w - gw) // 2 if mode == "center" else int(rng.integers(0, w - gw + 1))
    return _Box(x, (h - gh) // 2, gw, gh)


def make_overlay_video(
    path: str | Path,
    *,
    game: str,
    style: str | None,
    seed: int,
    fps: float = 60,
    seconds: float = 4,
    bitrate_kbps: int | None = 1500,
    size: tuple[int, int] = (640, 360),
    opacity: float | None = None,
    scale: float | None = None,
    lag_ms: float | None = None,
    distractors: bool = True,
    codec: str = "h264",
    position: tuple[float, float] | None = None,
) -> SynthVideo:
    """Play `game` with a scripted player for `seconds`, composite `style`'s overlay (None: no overlay) showing the
    input `lag_ms` late, and write it to `path` with `<path>.truth.npz` beside it. Knobs left None are drawn from
    `seed`: opacity 0.5-1, scale 0.6-1.2, lag 0-100 ms, position anywhere the overlay fits."""
    path = Path(path)
    if game not in GAMES:
        raise ValueError(f"unknown game {game!r}; expected one of {GAMES}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    if n < 1:
        raise ValueError(f"make_overlay_video: seconds * fps must give at least one frame, got {seconds} * {fps}")
    style_obj = get_style(style) if style is not None else None
    opacity = float(rng.uniform(0.5, 1.0)) if opacity is None else float(opacity)
    scale = float(rng.uniform(0.6, 1.2)) if scale is None else float(scale)
    lag_ms = float(rng.uniform(0, 100)) if lag_ms is None else float(lag_ms)
    if not 0.5 <= opacity <= 1 or not 0.3 <= scale <= 2 or not 0 <= lag_ms <= 1000:
        raise ValueError(
            f"make_overlay_video: opacity {opacity} (0.5-1), scale {scale} (0.3-2), lag_ms {lag_ms} "
            "(0-1000) out of range"
        )
    lag = int(round(lag_ms * fps / 1000))
    stream = random_pad_stream(n + lag, fps, rng)
    actions, truth = stream[lag:], stream[:n]  # truth[i] == actions[i - lag]: the overlay shows old input

    overlay_box, affine = _Box(0, 0, 0, 0), np.zeros((2, 3))
    if style_obj is not None:
        tw, th = canonical_size(style_obj.family)
        ow, oh = tw * scale, th * scale
        if ow > size[0] or oh > size[1]:
            raise ValueError(f"overlay {ow:.0f}x{oh:.0f} at scale {scale} does not fit a {size} video")
        if position is None:
            position = (float(rng.uniform(0, size[0] - ow)), float(rng.uniform(0, size[1] - oh)))
        x0, y0 = position
        overlay_box = _Box(
            int(np.floor(x0)),
            int(np.floor(y0)),
            int(np.ceil(x0 + ow)) - int(np.floor(x0)),
            int(np.ceil(y0 + oh)) - int(np.floor(y0)),
        )
    clutter = Distractors(rng, size, [overlay_box] if style_obj else [], fps) if distractors else None
    bg = tuple(int(c) for c in rng.integers(0, 60, 3))

    writer = VideoWriter(path, fps, size, bitrate_kbps, codec)
    game_box = None
    try:
        for i, native in enumerate(gameplay_frames(game, actions, fps, seed)):
            if game_box is None:
                game_box = _game_box(rng, size, (native.shape[1], native.shape[0]))
            frame = np.empty((size[1], size[0], 3), np.uint8)
            frame[:] = bg
            frame[game_box.y : game_box.y + game_box.h, game_box.x : game_box.x + game_box.w] = cv2.resize(
                native, (game_box.w, game_box.h), interpolation=cv2.INTER_NEAREST
            )
            if clutter:
                clutter.draw(frame, i)
            if style_obj is not None:
                assert position is not None  # drawn above whenever there is an overlay
                frame, affine = composite(
                    frame,
                    render_premultiplied(style_obj, truth[i]),
                    x=position[0],
                    y=position[1],
                    scale=scale,
                    opacity=opacity,
                    premultiplied=True,
                )
            writer.write(frame)
    finally:
        writer.close()
    assert game_box is not None  # gameplay_frames yields n >= 1 frames
    video = SynthVideo(
        path=path,
        fps=float(fps),
        width=size[0],
        height=size[1],
        style=style or "",
        family=style_obj.family if style_obj else "",
        truth=truth if style_obj else [],
        actions=actions,
        overlay_affine=affine,
        bbox_overlay=dataclasses.astuple(overlay_box),
        bbox_game=dataclasses.astuple(game_box),
        has_overlay=style_obj is not None,
        game=game,
        lag_frames=lag,
        opacity=opacity,
        scale=scale,
        bitrate_kbps=bitrate_kbps,
        codec=writer.codec,
    )
    _save_truth(video)
    return video


def _save_truth(video: SynthVideo) -> None:
    meta = {
        f.name: getattr(video, f.name)
        for f in dataclasses.fields(SynthVideo)
        if f.name not in ("path", "truth", "actions", "overlay_affine")
    }
    arrays: dict[str, Any] = {f"truth_{k}": v for k, v in stack_states(video.truth).items()}
    arrays |= {f"actions_{k}": v for k, v in stack_states(video.actions).items()}
    np.savez_compressed(
        truth_path(video.path),
        overlay_affine=video.overlay_affine,
        meta=json.dumps(meta),
        buttons_order=np.array(STANDARD_BUTTONS),
        **arrays,
    )


def load_synth_video(path: str | Path) -> SynthVideo:
    """The `SynthVideo` that `make_overlay_video` wrote to `path` (from `<path>.truth.npz`)."""
    path = Path(path)
    tp = truth_path(path)
    if not tp.exists():
        raise FileNotFoundError(f"{tp}: no truth file beside {path} (written by make_overlay_video)")
    with np.load(tp) as d:
        if tuple(d["buttons_order"]) != STANDARD_BUTTONS:
            raise ValueError(f"{tp}: buttons_order {tuple(d['buttons_order'])} is not STANDARD_BUTTONS")
        meta = json.loads(str(d["meta"]))
        truth = unstack_states({k: d[f"truth_{k}"] for k in ("buttons", "j_left", "j_right", "triggers")})
        actions = unstack_states({k: d[f"actions_{k}"] for k in ("buttons", "j_left", "j_right", "triggers")})
        affine = d["overlay_affine"]
    meta["bbox_overlay"], meta["bbox_game"] = tuple(meta["bbox_overlay"]), tuple(meta["bbox_game"])
    return SynthVideo(path=path, truth=truth, actions=actions, overlay_affine=affine, **meta)


# ------------------------------------------------------------------------------------------------ the command
@dataclasses.dataclass(frozen=True)
class MakeOverlayVideosArgs:
    """Write a set of synthetic overlay videos (and overlay-free ones) with their per-frame truth."""

    out: Path = Path("overlay_videos")
    """Folder to write `<name>.mp4` + `<name>.mp4.truth.npz` and `manifest.json` into."""
    count: int = 12
    """Videos with an overlay."""
    no_overlay: int = 2
    """Extra videos without any overlay (false-positive checks)."""
    split: str = "train"
    """'train' (TRAIN_STYLES on TRAIN_GAMES) or 'heldout' (HELDOUT_STYLES on HELDOUT_GAMES)."""
    seed: int = 0
    """First seed; video i uses seed + i, so any video can be made again alone."""
    seconds: float = 4.0
    """Length of each video."""
    fps: tuple[float, ...] = (30.0, 60.0)
    """Frame rates, cycled over the videos."""
    bitrates_kbps: tuple[int, ...] = (500, 1500, 4000)
    """H.264 bitrates, cycled over the videos (coprime with the fps cycle, so every pair occurs)."""
    width: int = 640
    """Video width (even)."""
    height: int = 360
    """Video height (even)."""
    codec: str = "h264"
    """'h264' (libx264 via PyAV) or 'mp4v'."""


def run(args: MakeOverlayVideosArgs) -> int:
    """Write a varied set of synthetic overlay videos: styles, games, fps and bitrates cycled, the rest drawn."""
    from tqdm import tqdm

    from nitrogen_jax.data.overlay.styles import HELDOUT_STYLES, TRAIN_STYLES

    if args.split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {args.split!r}")
    styles = TRAIN_STYLES if args.split == "train" else HELDOUT_STYLES
    games = TRAIN_GAMES if args.split == "train" else HELDOUT_GAMES
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i in tqdm(range(args.count + args.no_overlay), desc=f"overlay videos ({args.split})", unit="video"):
        style = styles[i % len(styles)] if i < args.count else None
        game, fps = games[i % len(games)], args.fps[i % len(args.fps)]
        bitrate = args.bitrates_kbps[i % len(args.bitrates_kbps)]
        name = f"{args.split}_{i:04d}_{style or 'none'}_{game.split(':')[1]}_{fps:g}fps_{bitrate}k"
        video = make_overlay_video(
            args.out / f"{name}.mp4",
            game=game,
            style=style,
            seed=args.seed + i,
            fps=fps,
            seconds=args.seconds,
            bitrate_kbps=bitrate,
            size=(args.width, args.height),
            codec=args.codec,
        )
        manifest.append(
            {
                "video": video.path.name,
                "style": video.style,
                "game": game,
                "fps": fps,
                "bitrate_kbps": bitrate,
                "has_overlay": video.has_overlay,
                "lag_frames": video.lag_frames,
                "scale": round(video.scale, 3),
                "opacity": round(video.opacity, 3),
            }
        )
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{args.out}: {len(manifest)} videos ({args.no_overlay} without overlay)")
    return 0
