"""ALE backend: Atari 2600 games from ale-py's bundled ROMs (`ale:Breakout`, `ale:MsPacman`, ...).

The Atari joystick has 8 directions and one button; ALE's full action set holds all 18 combinations, so every
standard gamepad state has exactly one native action:

| standard | Atari joystick |
|---|---|
| D-pad or left stick beyond 0.5 (opposites cancel) | UP / DOWN / LEFT / RIGHT and the diagonals |
| any face button (south, east, west, north) | FIRE |
| everything else | unused |

Sticky actions are off and frameskip is 1: one step is exactly one frame of the held input, and a run is a
deterministic function of the seed and the inputs.
"""

from __future__ import annotations

import re

import numpy as np

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.sim_bridge.env import GamepadEnv, directions

FIRE_BUTTONS = ("south", "east", "west", "north")


def rom_id(game: str) -> str:
    """'MsPacman' or 'ms_pacman' -> ale-py's ROM id 'ms_pacman'."""
    from ale_py import roms

    rid = game if "_" in game or game.islower() else re.sub(r"(?<!^)(?=[A-Z])", "_", game).lower()
    known = roms.get_all_rom_ids()
    if rid not in known:
        raise ValueError(
            f"ALE game {game!r} (ROM id {rid!r}) is not among ale-py's {len(known)} bundled ROMs, e.g. "
            f"{', '.join(known[:6])}..."
        )
    return rid


class AleGamepadEnv(GamepadEnv):
    """An Atari 2600 game, one frame per step, sticky actions off."""

    def __init__(self, game: str = "Breakout"):
        from ale_py.env import AtariEnv

        super().__init__(game)
        self._env = AtariEnv(
            game=rom_id(game), obs_type="rgb", frameskip=1, repeat_action_probability=0.0, full_action_space=True
        )
        self._action_index = {name: i for i, name in enumerate(self._env.get_action_meanings())}

    @property
    def spec_name(self) -> str:
        return f"ale:{self.game}"

    def native_action(self, pad: Gamepad) -> int:
        """The index of the ALE action (NOOP, FIRE, UP, ..., DOWNLEFTFIRE) this state holds."""
        up, down, left, right = directions(pad)
        fire = any(pad.button(b)[0] for b in FIRE_BUTTONS)
        name = ("UP" if up else "DOWN" if down else "") + ("RIGHT" if right else "LEFT" if left else "")
        name += "FIRE" if fire else ""
        return self._action_index[name or "NOOP"]

    def _native_reset(self, seed):
        return self._env.reset(seed=seed)

    def _native_step(self, pad):
        return self._env.step(self.native_action(pad))

    def ram(self) -> np.ndarray:
        return self._env.ale.getRAM()

    def save_state(self) -> bytes:
        return bytes(self._env.ale.cloneState().serialize())

    def _native_load_state(self, state):
        from ale_py import ALEState

        ale = self._env.ale
        ale.restoreState(ALEState(state))
        return ale.getScreenRGB(), {
            "lives": ale.lives(),
            "episode_frame_number": ale.getEpisodeFrameNumber(),
            "frame_number": ale.getFrameNumber(),
        }

    def close(self):
        self._env.close()
