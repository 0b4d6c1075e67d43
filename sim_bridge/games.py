"""Games by name: a spec string ('ale:Breakout', 'retro:Airstriker-Genesis') -> a frame-stepped `GamepadEnv`.

Apart from `env` so that the base class does not import its own subclasses (each backend imports `env`).
"""

from __future__ import annotations

from nitrogen_jax.sim_bridge.env import GamepadEnv


def make_env(spec: str, **kwargs) -> GamepadEnv:
    """'retro:Airstriker-Genesis' or 'ale:Breakout' -> a `GamepadEnv`."""
    backend, _, game = spec.partition(":")
    if backend == "retro" and game:
        from nitrogen_jax.sim_bridge.retro_env import RetroGamepadEnv

        return RetroGamepadEnv(game, **kwargs)
    if backend == "ale" and game:
        from nitrogen_jax.sim_bridge.ale_env import AleGamepadEnv

        return AleGamepadEnv(game, **kwargs)
    raise ValueError(f"environment spec must be 'retro:<Game>' or 'ale:<Game>', got {spec!r}")
