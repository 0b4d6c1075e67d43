"""Action layouts: how a standard gamepad state is laid out in the model's action vector.

Every layer speaks one *standard gamepad* (`Gamepad`): the 17 physical buttons of the public dataset's
labels plus two sticks with x, y in [-1, 1] and y positive downward. A layout turns a sequence of standard
gamepad states into the model's action vectors (`encode`) and back (`decode`); the model itself only sees the
vectors, so a layout is the one place that knows button order and stick encoding.

- `release`: the public checkpoint's 25 dims: 21 alphabetical "buttons" (17 physical + 4 right-stick direction
  pseudo-buttons that no client sends, encoded as 0), then left stick (x, y), right stick (x, y), sticks stored as
  (v + 1) / 2 in [0, 1].
- `seed`: the seed description's 20 dims: 16 binary buttons (no GUIDE) then 4 stick axes in [-1, 1].
"""

from __future__ import annotations

import dataclasses

import numpy as np

# The public dataset's 17 boolean button labels, in its (alphabetical) order.
STANDARD_BUTTONS: tuple[str, ...] = (
    "back",
    "dpad_down",
    "dpad_left",
    "dpad_right",
    "dpad_up",
    "east",
    "guide",
    "left_shoulder",
    "left_thumb",
    "left_trigger",
    "north",
    "right_shoulder",
    "right_thumb",
    "right_trigger",
    "south",
    "start",
    "west",
)
MENU_BUTTONS: tuple[str, ...] = ("start", "guide", "back")
STICKS: tuple[str, ...] = ("j_left", "j_right")


@dataclasses.dataclass
class Gamepad:
    """A sequence of T standard gamepad states.

    buttons: bool [T, 17] in `STANDARD_BUTTONS` order; j_left, j_right: float32 [T, 2] as (x, y) in [-1, 1],
    y positive downward (the dataset's and XInput-after-flip convention).
    """

    buttons: np.ndarray
    j_left: np.ndarray
    j_right: np.ndarray

    def __post_init__(self):
        self.buttons = np.asarray(self.buttons, dtype=bool)
        self.j_left = np.asarray(self.j_left, dtype=np.float32)
        self.j_right = np.asarray(self.j_right, dtype=np.float32)
        t = self.buttons.shape[0] if self.buttons.ndim == 2 else None
        if self.buttons.ndim != 2 or self.buttons.shape[1] != len(STANDARD_BUTTONS):
            raise ValueError(f"Gamepad.buttons must be bool [T, {len(STANDARD_BUTTONS)}], got {self.buttons.shape}")
        for name in STICKS:
            v = getattr(self, name)
            if v.shape != (t, 2):
                raise ValueError(f"Gamepad.{name} must be float [T={t}, 2], got {v.shape}")

    def __len__(self) -> int:
        return self.buttons.shape[0]

    def __getitem__(self, index: int | slice) -> Gamepad:
        """Frames of the sequence as a Gamepad: pad[i] is the one-frame pad of frame i, pad[a:b] a sub-sequence."""
        if isinstance(index, slice):
            return Gamepad(self.buttons[index], self.j_left[index], self.j_right[index])
        i = range(len(self))[index]  # bounds check, negative indices
        return self[i : i + 1]

    @classmethod
    def zeros(cls, t: int) -> Gamepad:
        return cls(
            np.zeros((t, len(STANDARD_BUTTONS)), bool), np.zeros((t, 2), np.float32), np.zeros((t, 2), np.float32)
        )

    def button(self, name: str) -> np.ndarray:
        """bool [T] for one standard button name."""
        return self.buttons[:, STANDARD_BUTTONS.index(name)]

    def pressed(self, i: int) -> list[str]:
        return [n for n, b in zip(STANDARD_BUTTONS, self.buttons[i], strict=False) if b]


@dataclasses.dataclass(frozen=True)
class ActionLayout:
    """Where each button and stick axis sits in the action vector, and how sticks are scaled.

    button_names: the layout's button slots, in order, as standard names (or pseudo names that are always 0).
    stick_slots: for each of `STICKS`, the indices of its (x, y) in the vector.
    stick_range: "unit" stores v as (v + 1) / 2 in [0, 1]; "signed" stores v in [-1, 1].
    """

    name: str
    button_names: tuple[str, ...]
    stick_slots: tuple[tuple[int, int], tuple[int, int]]
    stick_range: str
    button_threshold: float = 0.5

    @property
    def dim(self) -> int:
        return len(self.button_names) + 4

    @property
    def button_slots(self) -> dict[str, int]:
        """Standard button name -> index in the vector, for the physical buttons the layout carries."""
        return {n: i for i, n in enumerate(self.button_names) if n in STANDARD_BUTTONS}

    def encode(self, pad: Gamepad) -> np.ndarray:
        """Standard gamepad states -> float32 [T, dim] action vectors."""
        out = np.zeros((len(pad), self.dim), np.float32)
        for name, slot in self.button_slots.items():
            out[:, slot] = pad.button(name)
        for stick, (ix, iy) in zip(STICKS, self.stick_slots, strict=False):
            v = np.clip(getattr(pad, stick), -1.0, 1.0)
            out[:, [ix, iy]] = (v + 1.0) / 2.0 if self.stick_range == "unit" else v
        return out

    def decode(self, actions) -> Gamepad:
        """float [T, dim] action vectors (model units) -> standard gamepad states.

        Buttons are pressed above `button_threshold`; sticks are mapped back to [-1, 1] and clamped.
        Standard buttons the layout does not carry (GUIDE in `seed`) decode as released.
        """
        a = np.asarray(actions, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"layout {self.name!r} decodes float [T, {self.dim}] actions, got shape {a.shape}")
        pad = Gamepad.zeros(a.shape[0])
        for name, slot in self.button_slots.items():
            pad.buttons[:, STANDARD_BUTTONS.index(name)] = a[:, slot] > self.button_threshold
        for stick, (ix, iy) in zip(STICKS, self.stick_slots, strict=False):
            v = a[:, [ix, iy]]
            v = 2.0 * v - 1.0 if self.stick_range == "unit" else v
            setattr(pad, stick, np.clip(v, -1.0, 1.0).astype(np.float32))
        return pad


# The release's 21 "buttons": the dataset's 17 plus 4 right-stick direction pseudo-buttons, all alphabetical.
RIGHT_STICK_PSEUDO_BUTTONS = ("right_bottom", "right_left", "right_right", "right_up")
RELEASE_LAYOUT = ActionLayout(
    name="release",
    button_names=tuple(sorted(STANDARD_BUTTONS + RIGHT_STICK_PSEUDO_BUTTONS)),
    stick_slots=((21, 22), (23, 24)),
    stick_range="unit",
)

SEED_LAYOUT = ActionLayout(
    name="seed",
    button_names=(
        "dpad_up",
        "dpad_down",
        "dpad_left",
        "dpad_right",
        "south",
        "east",
        "west",
        "north",
        "left_shoulder",
        "right_shoulder",
        "left_trigger",
        "right_trigger",
        "left_thumb",
        "right_thumb",
        "start",
        "back",
    ),
    stick_slots=((16, 17), (18, 19)),
    stick_range="signed",
)

LAYOUTS: dict[str, ActionLayout] = {layout.name: layout for layout in (RELEASE_LAYOUT, SEED_LAYOUT)}


def get_layout(name: str | ActionLayout) -> ActionLayout:
    if isinstance(name, ActionLayout):
        return name
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown action layout {name!r}; expected one of {sorted(LAYOUTS)}") from None


def layout_for_dim(dim: int) -> ActionLayout:
    """The layout whose vector has `dim` entries (used when importing a checkpoint)."""
    for layout in LAYOUTS.values():
        if layout.dim == dim:
            return layout
    raise ValueError(
        f"no action layout has {dim} dims; known: " + ", ".join(f"{x.name}={x.dim}" for x in LAYOUTS.values())
    )
