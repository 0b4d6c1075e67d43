"""The action visualiser: the predicted chunk drawn beside the frame it was predicted for.

Left, the game frame; right, the chunk as a button timeline (one row per standard button, one column per action,
the action being executed outlined) and the two sticks' predicted paths (the executed position as a dot).
Seeing what a policy intends, frame by frame, is the quickest way to tell a confused model from a broken bridge.
"""

from __future__ import annotations

import cv2
import numpy as np

from nitrogen_jax.actions import STANDARD_BUTTONS, STICKS, Gamepad

PANEL = 384
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE, _GREY, _DARK, _LIT, _CUR = (235, 235, 235), (110, 110, 110), (40, 40, 40), (60, 200, 90), (255, 200, 40)


def draw_chunk(frame: np.ndarray, chunk: Gamepad, index: int) -> np.ndarray:
    """frame: RGB uint8 (any size); chunk: the predicted states; index: the one being executed -> RGB [384, 768, 3]."""
    canvas = np.zeros((PANEL, 2 * PANEL, 3), np.uint8)
    canvas[:, :PANEL] = cv2.resize(frame, (PANEL, PANEL), interpolation=cv2.INTER_NEAREST)
    _draw_timeline(canvas, chunk, index, x0=PANEL + 96, y0=8, width=PANEL - 104, height=PANEL - 150)
    for k, stick in enumerate(STICKS):
        _draw_stick(
            canvas, getattr(chunk, stick), index, center=(PANEL + 96 + 70 + 150 * k, PANEL - 72), radius=50, label=stick
        )
    return canvas


def _draw_timeline(canvas, chunk: Gamepad, index: int, x0: int, y0: int, width: int, height: int) -> None:
    rows, cols = len(STANDARD_BUTTONS), len(chunk)
    ch, cw = height / rows, width / cols
    for r, name in enumerate(STANDARD_BUTTONS):
        y = int(y0 + r * ch)
        cv2.putText(canvas, name, (x0 - 92, y + int(ch) - 3), _FONT, 0.33, _WHITE, 1, cv2.LINE_AA)
        for c in range(cols):
            x = int(x0 + c * cw)
            color = _LIT if chunk.buttons[c, r] else _DARK
            cv2.rectangle(canvas, (x + 1, y + 1), (int(x + cw) - 1, int(y + ch) - 1), color, -1)
    x = int(x0 + index * cw)
    cv2.rectangle(canvas, (x, y0), (int(x + cw), y0 + height), _CUR, 1)


def _draw_stick(canvas, xy: np.ndarray, index: int, center: tuple[int, int], radius: int, label: str) -> None:
    cx, cy = center
    cv2.circle(canvas, center, radius, _GREY, 1, cv2.LINE_AA)
    points = np.stack([cx + xy[:, 0] * radius, cy + xy[:, 1] * radius], axis=1).round().astype(np.int32)
    cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, _LIT, 1, cv2.LINE_AA)
    cv2.circle(canvas, tuple(int(v) for v in points[index]), 5, _CUR, -1, cv2.LINE_AA)
    cv2.putText(canvas, label, (cx - radius, cy + radius + 14), _FONT, 0.4, _WHITE, 1, cv2.LINE_AA)
