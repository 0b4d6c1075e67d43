"""Standard gamepad states -> the reports of virtual controllers (xbox_one, ps4, generic).

A game client injects the model's actions through a virtual pad (ViGEm on Windows, uinput on Linux). Such pads
speak integers: sticks as int16 with y positive *up* (the model's y is positive down, so y is flipped) and
triggers as 0-255. The model's triggers are binary, so they become 0 or 255. The families differ only in button
names; the standard gamepad's 17 buttons map one-to-one onto each of them.

Menu buttons (START, GUIDE, BACK) are released unless a caller allows them: a policy that opens the pause menu
or the console's home screen stops the game it is playing, which is never what an evaluation wants.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nitrogen_jax.actions import MENU_BUTTONS, STANDARD_BUTTONS, Gamepad

TRIGGERS = ("left_trigger", "right_trigger")
STICK_MAX = 32767
TRIGGER_MAX = 255

# Standard button -> native name, per family. Triggers are axes on every family and are not listed here.
_XBOX_ONE = {
    "south": "A",
    "east": "B",
    "west": "X",
    "north": "Y",
    "left_shoulder": "LB",
    "right_shoulder": "RB",
    "left_thumb": "LS",
    "right_thumb": "RS",
    "back": "VIEW",
    "start": "MENU",
    "guide": "XBOX",
    "dpad_up": "DPAD_UP",
    "dpad_down": "DPAD_DOWN",
    "dpad_left": "DPAD_LEFT",
    "dpad_right": "DPAD_RIGHT",
}
_PS4 = {
    "south": "CROSS",
    "east": "CIRCLE",
    "west": "SQUARE",
    "north": "TRIANGLE",
    "left_shoulder": "L1",
    "right_shoulder": "R1",
    "left_thumb": "L3",
    "right_thumb": "R3",
    "back": "SHARE",
    "start": "OPTIONS",
    "guide": "PS",
    "dpad_up": "DPAD_UP",
    "dpad_down": "DPAD_DOWN",
    "dpad_left": "DPAD_LEFT",
    "dpad_right": "DPAD_RIGHT",
}
# SDL's GameController names: what a generic HID pad is mapped to on Linux and by most engines.
_GENERIC = {
    "south": "a",
    "east": "b",
    "west": "x",
    "north": "y",
    "left_shoulder": "leftshoulder",
    "right_shoulder": "rightshoulder",
    "left_thumb": "leftstick",
    "right_thumb": "rightstick",
    "back": "back",
    "start": "start",
    "guide": "guide",
    "dpad_up": "dpup",
    "dpad_down": "dpdown",
    "dpad_left": "dpleft",
    "dpad_right": "dpright",
}
FAMILIES: dict[str, dict[str, str]] = {"xbox_one": _XBOX_ONE, "ps4": _PS4, "generic": _GENERIC}
TRIGGER_NAMES: dict[str, tuple[str, str]] = {
    "xbox_one": ("LT", "RT"),
    "ps4": ("L2", "R2"),
    "generic": ("lefttrigger", "righttrigger"),
}


def mask_menu(pad: Gamepad, allow_menu: bool = False) -> Gamepad:
    """The same states with START, GUIDE and BACK released, unless `allow_menu`."""
    if allow_menu:
        return pad
    buttons = pad.buttons.copy()
    for name in MENU_BUTTONS:
        buttons[:, STANDARD_BUTTONS.index(name)] = False
    return Gamepad(buttons, pad.j_left, pad.j_right)


def stick_to_int16(v: np.ndarray) -> np.ndarray:
    """(x, y) in [-1, 1] with y down -> int16 (x, y) with y up, truncated like `int(v * 32767)`."""
    v = np.clip(np.asarray(v, np.float32), -1.0, 1.0) * np.array([1.0, -1.0], np.float32)
    return np.trunc(v * STICK_MAX).astype(np.int16)


@dataclasses.dataclass
class ControllerStates:
    """T frames of one virtual controller: native button names, int16 sticks (y up), uint8 triggers."""

    family: str
    buttons: dict[str, np.ndarray]  # native name -> bool [T]
    left_stick: np.ndarray  # int16 [T, 2]
    right_stick: np.ndarray  # int16 [T, 2]
    triggers: np.ndarray  # uint8 [T, 2] (left, right)

    def __len__(self) -> int:
        return self.triggers.shape[0]

    def frame(self, i: int) -> dict:
        """One frame as plain Python values: what a virtual-pad driver is handed."""
        lt, rt = TRIGGER_NAMES[self.family]
        return {
            "buttons": {name: bool(v[i]) for name, v in self.buttons.items()},
            "left_stick": tuple(int(x) for x in self.left_stick[i]),
            "right_stick": tuple(int(x) for x in self.right_stick[i]),
            lt: int(self.triggers[i, 0]),
            rt: int(self.triggers[i, 1]),
        }


def to_controller(pad: Gamepad, family: str = "xbox_one", allow_menu: bool = False) -> ControllerStates:
    """Standard gamepad states -> the states of a virtual controller of `family`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown controller family {family!r}; expected one of {sorted(FAMILIES)}")
    pad = mask_menu(pad, allow_menu)
    buttons = {native: pad.button(std).copy() for std, native in FAMILIES[family].items()}
    triggers = np.stack([pad.button(t) for t in TRIGGERS], axis=1).astype(np.uint8) * np.uint8(TRIGGER_MAX)
    return ControllerStates(family, buttons, stick_to_int16(pad.j_left), stick_to_int16(pad.j_right), triggers)
