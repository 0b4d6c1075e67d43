"""Frame-stepped Gymnasium environments driven by the standard gamepad.

One `step` is one emulator frame; the emulator does not run between steps, so the game waits while the model
thinks (the release pauses the game clock for the same reason). Observations are what the model sees: the frame
squashed to 256x256 RGB uint8 with INTER_AREA, like the release's client. The native frame stays available through
`render()` (for videos) and the console's RAM through `ram()` (for task predicates).

Backends (`retro:<Game>`, `ale:<Game>`) subclass `GamepadEnv` and map the standard gamepad to their native
controls; `games.make_env("ale:Breakout")` builds one from a spec string.
"""

from __future__ import annotations

import abc

import gymnasium as gym
import numpy as np

from nitrogen_jax.actions import STANDARD_BUTTONS, Gamepad
from nitrogen_jax.frames import CLIENT_FRAME_SIZE as OBS_SIZE
from nitrogen_jax.frames import squash_frame

DEADZONE = 0.5  # a stick counts as a direction beyond this (for consoles that only have a D-pad)


def gamepad_space() -> gym.spaces.Dict:
    """One standard gamepad state: 17 buttons, two sticks (x, y) in [-1, 1] with y down."""
    stick = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    return gym.spaces.Dict(
        {"buttons": gym.spaces.MultiBinary(len(STANDARD_BUTTONS)), "j_left": stick, "j_right": stick}
    )


def as_gamepad(action) -> Gamepad:
    """A `gamepad_space` sample (dict) or a one-frame `Gamepad` -> a one-frame `Gamepad`."""
    if isinstance(action, Gamepad):
        pad = action
    elif isinstance(action, dict) and set(action) == {"buttons", "j_left", "j_right"}:
        pad = Gamepad(
            np.asarray(action["buttons"]).reshape(1, -1),
            np.reshape(action["j_left"], (1, 2)),
            np.reshape(action["j_right"], (1, 2)),
        )
    else:
        raise ValueError(
            f"an action is a Gamepad of one frame or a dict with keys buttons, j_left, j_right; got {action!r:.200}"
        )
    if len(pad) != 1:
        raise ValueError(f"an action is one frame; got a Gamepad of {len(pad)} frames (step through them one by one)")
    return pad


def directions(pad: Gamepad) -> tuple[bool, bool, bool, bool]:
    """(up, down, left, right) of a one-frame pad from its D-pad or its left stick; opposite directions cancel."""
    x, y = pad.j_left[0]
    up = pad.button("dpad_up")[0] or y < -DEADZONE
    down = pad.button("dpad_down")[0] or y > DEADZONE
    left = pad.button("dpad_left")[0] or x < -DEADZONE
    right = pad.button("dpad_right")[0] or x > DEADZONE
    return bool(up and not down), bool(down and not up), bool(left and not right), bool(right and not left)


def to_observation(frame: np.ndarray) -> np.ndarray:
    return squash_frame(frame, OBS_SIZE)


class GamepadEnv(gym.Env, abc.ABC):
    """A game stepped one frame per standard-gamepad action. Subclasses implement the `_native_*` methods."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 60}

    def __init__(self, game: str):
        self.game = game
        self.observation_space = gym.spaces.Box(0, 255, (OBS_SIZE, OBS_SIZE, 3), np.uint8)
        self.action_space = gamepad_space()
        self.render_mode = "rgb_array"
        self.frame_number = 0
        self._frame: np.ndarray | None = None

    # ---------------------------------------------------------------- backend interface
    @property
    @abc.abstractmethod
    def spec_name(self) -> str:
        """The `make_env` spec string, e.g. 'ale:Breakout'."""

    @abc.abstractmethod
    def _native_reset(self, seed: int | None) -> tuple[np.ndarray, dict]:
        """Reset the emulator; return (native RGB frame, info)."""

    @abc.abstractmethod
    def _native_step(self, pad: Gamepad) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Advance one frame with the pad held; return (native RGB frame, reward, terminated, truncated, info)."""

    @abc.abstractmethod
    def ram(self) -> np.ndarray:
        """The console's work RAM as uint8 (what task predicates read)."""

    @abc.abstractmethod
    def save_state(self) -> bytes:
        """The whole emulator state, to restore later with `load_state`."""

    @abc.abstractmethod
    def _native_load_state(self, state: bytes) -> tuple[np.ndarray, dict]:
        """Restore a `save_state`; return (native RGB frame, info)."""

    @abc.abstractmethod
    def native_action(self, pad: Gamepad):
        """The native input a one-frame standard gamepad state becomes (documented per backend)."""

    # ---------------------------------------------------------------- gymnasium
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._frame, info = self._native_reset(seed)
        self.frame_number = 0
        return to_observation(self._frame), info

    def step(self, action):
        self._frame, reward, terminated, truncated, info = self._native_step(as_gamepad(action))
        self.frame_number += 1
        return to_observation(self._frame), float(reward), bool(terminated), bool(truncated), info

    def load_state(self, state: bytes):
        """Restore a saved state; returns (observation, info) like `reset`."""
        self._frame, info = self._native_load_state(state)
        self.frame_number = 0
        return to_observation(self._frame), info

    def render(self) -> np.ndarray:
        """The native frame (RGB uint8), before the squash to 256x256."""
        if self._frame is None:
            raise RuntimeError(f"{self.spec_name}: render() before reset()")
        return self._frame
