"""stable-retro backend: Sega Genesis games on a real 6-button Genesis pad (`retro:Airstriker-Genesis`).

stable-retro ships one ROM, Airstriker (a free homebrew shooter); other Genesis games run once their ROMs are
imported with `python -m stable_retro.import DIR`. The standard gamepad maps onto the Genesis pad the way
RetroArch's Genesis Plus GX core maps a modern pad by default (positions, not letters, are kept):

| standard | Genesis |            | standard | Genesis |
|---|---|---|---|---|
| west (X / Square) | A | | left_shoulder | X |
| south (A / Cross) | B | | north (Y / Triangle) | Y |
| east (B / Circle) | C | | right_shoulder | Z |
| start | START | | back | MODE |
| D-pad or left stick beyond 0.5 | UP / DOWN / LEFT / RIGHT | | others | unused |

stable-retro allows one emulator per process: close an env (or use it in a `with` block) before making another.
"""

from __future__ import annotations

import numpy as np

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.sim_bridge.env import GamepadEnv, directions

GENESIS_BUTTONS = {
    "west": "A",
    "south": "B",
    "east": "C",
    "left_shoulder": "X",
    "north": "Y",
    "right_shoulder": "Z",
    "start": "START",
    "back": "MODE",
}


def _resolve_game(name: str) -> str:
    import stable_retro

    games = set(stable_retro.data.list_games(stable_retro.data.Integrations.ALL))
    for candidate in (name, f"{name}-v0"):
        if candidate in games:
            return candidate
    raise ValueError(
        f"retro game {name!r} is not integrated in stable-retro; Genesis games include "
        f"{sorted(g for g in games if g.endswith('-Genesis-v0'))[:5]}... (only Airstriker ships its ROM)"
    )


class RetroGamepadEnv(GamepadEnv):
    """A stable-retro Genesis game, one frame per step. `state`: a bundled state name or a .state file path."""

    def __init__(self, game: str = "Airstriker-Genesis", state: str | None = None):
        import stable_retro

        super().__init__(game)
        self._game_id = _resolve_game(game)
        kwargs = {"state": state} if state else {}
        try:
            self._env = stable_retro.make(
                self._game_id,
                use_restricted_actions=stable_retro.Actions.ALL,
                inttype=stable_retro.data.Integrations.ALL,
                render_mode=None,
                **kwargs,
            )
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"retro game {self._game_id}: {e} (import its ROM with `python -m stable_retro.import DIR`)"
            ) from None
        native = self._env.unwrapped.buttons
        if set(GENESIS_BUTTONS.values()) - set(native):
            raise ValueError(f"retro game {self._game_id} has buttons {native}; only the Genesis pad is mapped")
        self._native = list(native)

    @property
    def spec_name(self) -> str:
        return f"retro:{self.game}"

    def native_action(self, pad: Gamepad) -> np.ndarray:
        """MultiBinary over the core's buttons (B, A, MODE, START, UP, DOWN, LEFT, RIGHT, C, Y, X, Z)."""
        held = {native for std, native in GENESIS_BUTTONS.items() if pad.button(std)[0]}
        for name, on in zip(("UP", "DOWN", "LEFT", "RIGHT"), directions(pad), strict=False):
            if on:
                held.add(name)
        return np.array([b in held for b in self._native], dtype=np.int8)

    def _native_reset(self, seed):
        frame, _ = self._env.reset(seed=seed)  # stable-retro's reset info is empty: read the variables instead
        return frame, dict(self._env.unwrapped.data.lookup_all())

    def _native_step(self, pad):
        return self._env.step(self.native_action(pad))

    def ram(self) -> np.ndarray:
        return np.asarray(self._env.unwrapped.get_ram(), np.uint8)

    def save_state(self) -> bytes:
        return bytes(self._env.unwrapped.em.get_state())

    def _native_load_state(self, state):
        env = self._env.unwrapped
        env.em.set_state(state)
        env.data.reset()
        env.data.update_ram()
        return env.em.get_screen(), dict(env.data.lookup_all())

    def close(self):
        self._env.close()
