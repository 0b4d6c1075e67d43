"""Agents: frames in, one chunk of standard gamepad states per frame out.

`PolicyAgent` samples the model (any action layout: the layout decodes its chunk) with a temperature, the scale
of the initial flow noise; `RandomAgent` is the baseline every evaluation reports beside it. Both release the menu
buttons unless told otherwise (see `controller.mask_menu`).
"""

from __future__ import annotations

import jax
import numpy as np

from nitrogen_jax.actions import STANDARD_BUTTONS, Gamepad
from nitrogen_jax.frames import squash_frame
from nitrogen_jax.policy import Policy
from nitrogen_jax.sim_bridge.controller import mask_menu

TEMPERATURE_RANGE = (0.5, 1.0)


def check_temperature(temperature: float) -> float:
    lo, hi = TEMPERATURE_RANGE
    if not lo <= float(temperature) <= hi:
        raise ValueError(f"temperature must be in [{lo}, {hi}] (the scale of the initial noise), got {temperature}")
    return float(temperature)


class PolicyAgent:
    """Samples a policy: frames uint8 [B,S,S,3] (any S; squashed to the policy's size) -> B chunks of
    `action_horizon` gamepad states."""

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
        size = self.policy.config.vision.image_size
        if frames.shape[1:3] != (size, size):
            # Environments hand out the client's 256x256; a smaller policy sees them squashed once more, as the
            # server does with a client's frames.
            frames = np.stack([squash_frame(f, size) for f in frames])
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


class ConstantAgent:
    """One gamepad state held forever: the baseline that shows whether a task needs the frame at all. Built from
    a recorded player's most frequent action (`most_frequent_action`), a policy that ignores the screen and does
    what the player does most often."""

    def __init__(self, pad: Gamepad, horizon: int = 18, allow_menu: bool = False, name: str = "constant"):
        if len(pad) != 1:
            raise ValueError(f"ConstantAgent holds one gamepad state; got a Gamepad of {len(pad)} frames")
        self.horizon, self._name = horizon, name
        held = mask_menu(pad, allow_menu)
        self._chunk = Gamepad(
            np.repeat(held.buttons, horizon, 0), np.repeat(held.j_left, horizon, 0), np.repeat(held.j_right, horizon, 0)
        )

    @property
    def name(self) -> str:
        return self._name

    def act(self, frames: np.ndarray) -> list[Gamepad]:
        return [self._chunk for _ in range(len(frames))]


def describe_pad(pad: Gamepad) -> str:
    """'dpad_left+south' / 'j_left (1.0, 0.0)' / 'nothing' for a one-frame pad (report labels)."""
    parts = [b for b, on in zip(STANDARD_BUTTONS, pad.buttons[0], strict=True) if on]
    parts += [
        f"{s} ({v[0]:.1f}, {v[1]:.1f})"
        for s, v in (("j_left", pad.j_left[0]), ("j_right", pad.j_right[0]))
        if np.abs(v).max() > 0.05
    ]
    return "+".join(parts) or "nothing"


def most_frequent_action(labels_dir, stick_step: float = 0.25) -> tuple[Gamepad, float]:
    """The most frequent gamepad state in a folder of labels (public layout), sticks rounded to `stick_step`;
    returns (that state as a one-frame Gamepad, the fraction of label rows that hold it)."""
    from nitrogen_jax.data.layout import iter_chunks

    counts: dict[bytes, int] = {}
    examples: dict[bytes, Gamepad] = {}
    total = 0
    for _, pad, _ in iter_chunks(labels_dir):
        # + 0.0 turns the -0.0 of a slightly negative rest position into 0.0: their bytes differ, so without it
        # read-off labels (sticks at +-0.001) split "nothing pressed" into several states.
        sticks = np.round(np.concatenate([pad.j_left, pad.j_right], 1) / stick_step) * stick_step + 0.0
        keys = np.concatenate([pad.buttons.astype(np.float32), sticks], 1)
        uniq, first, n = np.unique(keys, axis=0, return_index=True, return_counts=True)
        for row, i, c in zip(uniq, first, n, strict=True):
            k = row.tobytes()
            counts[k] = counts.get(k, 0) + int(c)
            examples.setdefault(k, Gamepad(pad.buttons[i : i + 1], sticks[i : i + 1, :2], sticks[i : i + 1, 2:]))
        total += len(pad)
    if not total:
        raise FileNotFoundError(f"{labels_dir}: no label chunks (<video_id>/<video_id>_chunk_NNNN) to count actions in")
    best = max(counts, key=counts.__getitem__)
    return examples[best], counts[best] / total


def constant_pad(buttons: tuple[str, ...] | None, labels_dir=None) -> tuple[Gamepad, str] | None:
    """The constant baseline's state from explicit `buttons` or a labels folder's most frequent action, with a line
    describing it; None when neither is given."""
    if buttons is not None:
        unknown = [b for b in buttons if b not in STANDARD_BUTTONS]
        if unknown:
            raise ValueError(f"constant baseline: unknown buttons {unknown}; expected names from {STANDARD_BUTTONS}")
        pad = Gamepad.zeros(1)
        for b in buttons:
            pad.buttons[0, STANDARD_BUTTONS.index(b)] = True
        return pad, f"holds {describe_pad(pad)} (given)"
    if labels_dir is not None:
        pad, share = most_frequent_action(labels_dir)
        return pad, f"holds {describe_pad(pad)}, the most frequent action in {labels_dir} ({share:.0%} of rows)"
    return None
