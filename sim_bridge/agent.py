"""Agents: frames in, one chunk of standard gamepad states per frame out.

`PolicyAgent` samples the model (any action layout: the layout decodes its chunk) with a temperature, the scale
of the initial flow noise; `RandomAgent` is the baseline every evaluation reports beside it. Both release the menu
buttons unless told otherwise (see `controller.mask_menu`).
"""

from __future__ import annotations

import jax
import numpy as np

from nitrogen_jax.actions import STANDARD_BUTTONS, Gamepad
from nitrogen_jax.policy import Policy
from nitrogen_jax.sim_bridge.controller import mask_menu

TEMPERATURE_RANGE = (0.5, 1.0)


def check_temperature(temperature: float) -> float:
    lo, hi = TEMPERATURE_RANGE
    if not lo <= float(temperature) <= hi:
        raise ValueError(f"temperature must be in [{lo}, {hi}] (the scale of the initial noise), got {temperature}")
    return float(temperature)


class PolicyAgent:
    """Samples a policy: frames uint8 [B,S,S,3] -> B chunks of `action_horizon` gamepad states."""

    def __init__(
        self,
        policy: Policy,
        temperature: float = 1.0,
        allow_menu: bool = False,
        num_steps: int | None = None,
        seed: int = 0,
    ):
        self.policy = policy
        self.temperature = check_temperature(temperature)
        self.allow_menu = allow_menu
        self.num_steps = num_steps
        self.horizon = policy.config.action_horizon
        self._rng = jax.random.key(seed)

    @property
    def name(self) -> str:
        return "policy"

    def act(self, frames: np.ndarray) -> list[Gamepad]:
        self._rng, rng = jax.random.split(self._rng)
        chunks = np.asarray(self.policy.sample(frames, rng=rng, num_steps=self.num_steps, temperature=self.temperature))
        layout = self.policy.config.layout
        return [mask_menu(layout.decode(c), self.allow_menu) for c in chunks]


class RandomAgent:
    """Uniformly random gamepad input: each button pressed with probability 1/2 per frame, sticks uniform."""

    def __init__(self, horizon: int = 18, allow_menu: bool = False, seed: int = 0):
        self.horizon = horizon
        self.allow_menu = allow_menu
        self._rng = np.random.default_rng(seed)

    @property
    def name(self) -> str:
        return "random"

    def act(self, frames: np.ndarray) -> list[Gamepad]:
        t = self.horizon
        return [
            mask_menu(
                Gamepad(
                    self._rng.random((t, len(STANDARD_BUTTONS))) < 0.5,
                    self._rng.uniform(-1, 1, (t, 2)),
                    self._rng.uniform(-1, 1, (t, 2)),
                ),
                self.allow_menu,
            )
            for _ in range(len(frames))
        ]
