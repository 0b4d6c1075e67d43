"""Overlay styles: the controller families' layouts and the visual styles each family is drawn in.

A family fixes the arrangement (where every button, stick ring and trigger bar sits in the template frame), so
rectified crops of any style of one family line up and a parser can read a style it never saw given only its
neutral template. A style fixes the look: colours, button shape, outlined or filled, theme, labels, highlight.
Some styles of every family are held out of parser training to measure exactly that.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from nitrogen_jax.actions import STANDARD_BUTTONS

FAMILIES: tuple[str, ...] = ("xbox", "ps", "generic")
Color = tuple[int, int, int]
ElementKind = Literal["face", "dpad", "shoulder", "trigger", "stick", "menu"]

STICK_ELEMENT = {"left_thumb": "j_left", "right_thumb": "j_right"}  # a stick click lights its stick's cap


@dataclasses.dataclass(frozen=True)
class Element:
    """One drawn element in template pixels: a button, a stick ring (`j_left`/`j_right`) or a trigger bar.

    (cx, cy): centre; size: radius for round things (face/menu buttons, stick rings), (w, h) for bars and arms;
    for a D-pad arm, (dx, dy) is the direction from the pad's centre (y down).
    """

    name: str
    kind: ElementKind
    cx: float
    cy: float
    w: float
    h: float
    dx: int = 0
    dy: int = 0


@dataclasses.dataclass(frozen=True)
class FamilyLayout:
    size: tuple[int, int]  # (width, height) of the template frame
    elements: tuple[Element, ...]
    trigger_axis: Literal["x", "y"]  # bars fill left->right ("x") or bottom->top ("y")
    face_labels: tuple[str, str, str, str]  # labels of (south, east, west, north)


def _face(cx: float, cy: float, spacing: float, radius: float) -> tuple[Element, ...]:
    return tuple(
        Element(name, "face", cx + dx * spacing, cy + dy * spacing, 2 * radius, 2 * radius)
        for name, dx, dy in (("south", 0, 1), ("east", 1, 0), ("west", -1, 0), ("north", 0, -1))
    )


def _dpad(cx: float, cy: float, arm: float, width: float) -> tuple[Element, ...]:
    """Four arms around a centre square of side `width`; each arm is `arm` long beyond the square."""
    out = []
    for name, dx, dy in (("dpad_up", 0, -1), ("dpad_down", 0, 1), ("dpad_left", -1, 0), ("dpad_right", 1, 0)):
        off = width / 2 + arm / 2
        w, h = (width, arm) if dx == 0 else (arm, width)
        out.append(Element(name, "dpad", cx + dx * off, cy + dy * off, w, h, dx, dy))
    return tuple(out)


def _pair(kind: ElementKind, names: tuple[str, str], xs: tuple[float, float], y: float, w: float, h: float):
    return tuple(Element(n, kind, x, y, w, h) for n, x in zip(names, xs, strict=True))


def _stick(name: str, cx: float, cy: float, radius: float) -> Element:
    return Element(name, "stick", cx, cy, 2 * radius, 2 * radius)


def _menu(cx: float, cy: float, names=("back", "guide", "start"), spacing=20.0, radii=(5.0, 8.0, 5.0), dy=(0, -14, 0)):
    return tuple(
        Element(n, "menu", cx + (i - 1) * spacing, cy + dy[i], 2 * r, 2 * r)
        for i, (n, r) in enumerate(zip(names, radii, strict=True))
    )


LAYOUTS: dict[str, FamilyLayout] = {
    # Xbox: offset sticks (left stick high, right stick low), ABXY upper right, D-pad lower left.
    "xbox": FamilyLayout(
        size=(256, 168),
        elements=(
            *_pair("trigger", ("left_trigger", "right_trigger"), (66, 190), 9, 52, 11),
            *_pair("shoulder", ("left_shoulder", "right_shoulder"), (66, 190), 23, 52, 10),
            _stick("j_left", 66, 64, 18),
            *_dpad(98, 108, 11, 10),
            *_face(190, 64, 16, 8),
            _stick("j_right", 158, 108, 18),
            *_menu(128, 62),
        ),
        trigger_axis="x",
        face_labels=("A", "B", "X", "Y"),
    ),
    # PlayStation: symmetric sticks low in the middle, D-pad and symbols high on either side, touchpad between.
    "ps": FamilyLayout(
        size=(256, 168),
        elements=(
            *_pair("trigger", ("left_trigger", "right_trigger"), (62, 194), 9, 52, 11),
            *_pair("shoulder", ("left_shoulder", "right_shoulder"), (62, 194), 23, 52, 10),
            *_dpad(62, 66, 11, 10),
            *_face(194, 66, 17, 8),
            _stick("j_left", 96, 112, 17),
            _stick("j_right", 160, 112, 17),
            Element("back", "menu", 90, 42, 8, 12),
            Element("start", "menu", 166, 42, 8, 12),
            Element("guide", "menu", 128, 112, 12, 12),
        ),
        trigger_axis="x",
        face_labels=("cross", "circle", "square", "triangle"),
    ),
    # Generic / Switch-like board (what Open Joystick Display and gamepad viewers draw): a flat panel, triggers as
    # vertical bars on its sides, Nintendo face labels (A east, B south).
    "generic": FamilyLayout(
        size=(288, 136),
        elements=(
            *_pair("trigger", ("left_trigger", "right_trigger"), (15, 273), 72, 13, 96),
            *_pair("shoulder", ("left_shoulder", "right_shoulder"), (62, 226), 16, 50, 11),
            *_dpad(62, 84, 12, 11),
            _stick("j_left", 114, 94, 18),
            _stick("j_right", 174, 94, 18),
            *_face(226, 84, 17, 8),
            *_menu(144, 46, spacing=26, radii=(6.0, 7.0, 6.0), dy=(0, 0, 0)),
        ),
        trigger_axis="y",
        face_labels=("B", "A", "Y", "X"),
    ),
}

for _family, _layout in LAYOUTS.items():  # every family shows exactly the dataset's buttons, two sticks, two triggers
    _names = {e.name for e in _layout.elements}
    _expected = (set(STANDARD_BUTTONS) - set(STICK_ELEMENT)) | {"j_left", "j_right"}
    assert _names == _expected, (_family, _names ^ _expected)


def canonical_size(family: str) -> tuple[int, int]:
    """(width, height) of the template frame of `family`."""
    if family not in LAYOUTS:
        raise ValueError(f"unknown overlay family {family!r}; expected one of {FAMILIES}")
    return LAYOUTS[family].size


def element_of(name: str) -> str:
    """The drawn element a button or stick lives in (a stick click lights its stick)."""
    return STICK_ELEMENT.get(name, name)


def element_boxes(family: str, margin: int = 3) -> dict[str, tuple[int, int, int, int]]:
    """[x, y, w, h] template-pixel boxes of every element and every button (stick clicks share their stick's box),
    grown by `margin` for thick anti-aliased outlines and clipped to the frame; a stick box holds the cap at any
    deflection in [-1, 1]^2."""
    width, height = canonical_size(family)
    boxes = {}
    for e in LAYOUTS[family].elements:
        half_w, half_h = e.w / 2, e.h / 2
        if e.kind == "stick":
            half_w = half_h = e.w / 2 * (STICK_TRAVEL + STICK_CAP)
        x0, y0 = max(int(e.cx - half_w) - margin, 0), max(int(e.cy - half_h) - margin, 0)
        x1 = min(int(e.cx + half_w + 0.999) + margin, width)
        y1 = min(int(e.cy + half_h + 0.999) + margin, height)
        boxes[e.name] = (x0, y0, x1 - x0, y1 - y0)
    for button, stick in STICK_ELEMENT.items():
        boxes[button] = boxes[stick]
    return boxes


STICK_TRAVEL = 0.62  # cap centre moves by this fraction of the ring radius at full deflection, per axis
STICK_CAP = 0.45  # cap radius as a fraction of the ring radius


@dataclasses.dataclass(frozen=True)
class OverlayStyle:
    """How one overlay looks. Colours are RGB.

    body: draw the controller silhouette (or board) behind the buttons, `body_alpha` opaque; without it only the
    elements are drawn, over transparency. button_fill None: idle buttons are outlined only. face_colors
    (south, east, west, north): coloured face buttons, as the fill (`face_fill`) or as the label colour.
    """

    name: str
    family: str
    body: bool = True
    body_color: Color = (38, 40, 46)
    body_alpha: int = 235
    line_color: Color = (150, 155, 165)
    line_width: int = 1
    button_fill: Color | None = (70, 72, 80)
    face_colors: tuple[Color, Color, Color, Color] | None = None
    face_fill: bool = False
    shape: Literal["round", "square"] = "round"
    labels: bool = True
    label_color: Color = (225, 228, 235)
    highlight: Color = (250, 250, 250)
    cap_color: Color = (200, 204, 212)
    trigger_fill: Color = (240, 200, 60)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"style {self.name!r}: unknown family {self.family!r}; expected one of {FAMILIES}")


XBOX_FACE = ((96, 176, 60), (220, 60, 50), (50, 120, 220), (240, 190, 40))  # A green, B red, X blue, Y yellow
PS_FACE = ((110, 150, 230), (230, 80, 90), (220, 120, 200), (60, 200, 170))  # cross, circle, square, triangle
SNES_FACE = ((240, 200, 40), (220, 50, 50), (60, 170, 80), (70, 90, 200))  # B, A, Y, X as on the Super Famicom

_DARK: dict[str, Any] = dict(
    body_color=(36, 38, 44), line_color=(140, 146, 158), button_fill=(66, 68, 78), label_color=(230, 232, 238)
)
_LIGHT: dict[str, Any] = dict(
    body_color=(232, 234, 238),
    line_color=(90, 94, 104),
    button_fill=(205, 208, 214),
    label_color=(40, 42, 48),
    cap_color=(120, 124, 134),
    highlight=(30, 30, 36),
)
_OUTLINE: dict[str, Any] = dict(
    body=False, button_fill=None, line_width=2, line_color=(235, 235, 240), cap_color=(235, 235, 240)
)

STYLES: dict[str, OverlayStyle] = {
    s.name: s
    for s in (
        OverlayStyle("xbox_filled_dark", "xbox", **_DARK, face_colors=XBOX_FACE, face_fill=True),
        OverlayStyle("xbox_outline_dark", "xbox", **_OUTLINE, face_colors=XBOX_FACE, highlight=(120, 220, 255)),
        OverlayStyle("xbox_filled_light", "xbox", **_LIGHT, face_colors=XBOX_FACE),
        OverlayStyle("xbox_square_nolabel", "xbox", **_DARK, shape="square", labels=False, highlight=(60, 230, 230)),
        OverlayStyle(
            "xbox_neon",
            "xbox",
            **{**_DARK, "line_color": (60, 255, 120), "button_fill": None},
            line_width=2,
            face_colors=XBOX_FACE,
            highlight=(60, 255, 120),
            trigger_fill=(60, 255, 120),
        ),
        OverlayStyle("ps_filled_dark", "ps", **_DARK, face_colors=PS_FACE),
        OverlayStyle(
            "ps_outline_light",
            "ps",
            **{**_OUTLINE, "line_color": (30, 32, 40), "cap_color": (30, 32, 40)},
            highlight=(255, 120, 40),
            trigger_fill=(255, 120, 40),
        ),
        OverlayStyle("ps_white", "ps", **_LIGHT, face_colors=PS_FACE, face_fill=True, shape="round"),
        OverlayStyle("ps_square_mono", "ps", **_DARK, shape="square", labels=False, highlight=(255, 80, 160)),
        OverlayStyle(
            "ps_blue_glow",
            "ps",
            body_color=(20, 30, 70),
            line_color=(120, 160, 255),
            button_fill=None,
            line_width=2,
            face_colors=PS_FACE,
            highlight=(160, 220, 255),
            cap_color=(120, 160, 255),
        ),
        OverlayStyle("generic_board_dark", "generic", **_DARK, face_colors=SNES_FACE, face_fill=True),
        OverlayStyle("generic_outline", "generic", **_OUTLINE, highlight=(255, 90, 90), trigger_fill=(255, 90, 90)),
        OverlayStyle("generic_light_square", "generic", **_LIGHT, shape="square"),
        OverlayStyle(
            "generic_nolabel_purple",
            "generic",
            body_color=(48, 30, 70),
            line_color=(180, 140, 230),
            button_fill=(80, 56, 110),
            labels=False,
            highlight=(255, 220, 90),
            cap_color=(220, 200, 255),
        ),
        OverlayStyle("generic_pastel", "generic", **_LIGHT, face_colors=SNES_FACE, shape="square", line_width=2),
    )
}

HELDOUT_STYLES: tuple[str, ...] = ("xbox_neon", "ps_blue_glow", "generic_pastel")
TRAIN_STYLES: tuple[str, ...] = tuple(n for n in STYLES if n not in HELDOUT_STYLES)


def _color(rng) -> Color:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _distance(a: Color, b: Color) -> int:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True))


def _far_color(rng, *others: Color, distance: int = 200) -> Color:
    """A random colour at least `distance` away (summed over channels) from each of `others`, so that what it
    marks (a press, a cap) stays visible against what it is drawn on."""
    for _ in range(100):
        c = _color(rng)
        if all(_distance(c, o) >= distance for o in others):
            return c
    return tuple(255 - v for v in others[0])  # type: ignore[return-value]


def _color_near(
    rng,
    base: Color,
    spread: int,
    far_from: tuple[Color, ...],
    distance: int,
    apart_from: Color | None = None,
    apart_distance: int = 60,
) -> Color | None:
    """A random colour within +-`spread` per channel of `base`, at least `distance` (summed) from each of
    `far_from` and, if given, `apart_distance` from `apart_from` (a press must still show on the cap it lights, if
    less starkly than against the body); None if 100 draws found none."""
    for _ in range(100):
        c: Color = tuple(min(255, max(0, v + int(rng.integers(-spread, spread + 1)))) for v in base)  # type: ignore[assignment]
        if (apart_from is None or _distance(c, apart_from) >= apart_distance) and all(
            _distance(c, o) >= distance for o in far_from
        ):
            return c
    return None


def random_style(family: str, rng) -> OverlayStyle:
    """A style drawn at random for `family`: every colour uniform over RGB (kept apart where a press or a cap must
    show), outlined or filled, round or square, with or without body, labels and face colours. Three in ten are
    accent looks, whose caps and presses take (nearly) the outline's colour, as neon and glow overlays do: a press
    then shows as a fill against its own outline, the hardest case to read.

    Parser training mixes these in beside TRAIN_STYLES so that it learns to read *any* look against its template
    rather than the dozen looks it was shown; HELDOUT_STYLES stay unseen (their colours are not sampled from)."""
    if family not in FAMILIES:
        raise ValueError(f"random_style: unknown family {family!r}; expected one of {FAMILIES}")
    body = bool(rng.random() < 0.6)
    body_color = _color(rng)
    behind = body_color if body else (0, 0, 0)
    button_fill = None if rng.random() < 0.35 else _far_color(rng, behind, distance=60)
    idle = button_fill if button_fill is not None else behind
    line_color = _far_color(rng, behind, distance=150)
    palettes = (None, XBOX_FACE, PS_FACE, SNES_FACE, (_color(rng), _color(rng), _color(rng), _color(rng)))
    cap_color = _far_color(rng, behind, distance=200)
    highlight = _far_color(rng, idle, line_color, distance=200)
    if rng.random() < 0.3:  # an accent look: caps and presses in (nearly) the outline's own colour
        cap_color = _color_near(rng, line_color, 40, far_from=(behind,), distance=200) or cap_color
        highlight = _color_near(rng, line_color, 60, far_from=(idle,), distance=200, apart_from=cap_color) or highlight
    return OverlayStyle(
        name=f"random_{family}_{int(rng.integers(1 << 30))}",
        family=family,
        body=body,
        body_color=body_color,
        body_alpha=int(rng.integers(160, 256)),
        line_color=line_color,
        line_width=int(rng.integers(1, 3)),
        button_fill=button_fill,
        face_colors=palettes[int(rng.integers(len(palettes)))],
        face_fill=bool(rng.random() < 0.5),
        shape="round" if rng.random() < 0.6 else "square",
        labels=bool(rng.random() < 0.6),
        label_color=_far_color(rng, idle, distance=150),
        highlight=highlight,
        cap_color=cap_color,
        trigger_fill=_far_color(rng, behind, distance=200),
    )


def get_style(name: str) -> OverlayStyle:
    if name not in STYLES:
        raise ValueError(f"unknown overlay style {name!r}; expected one of {sorted(STYLES)}")
    return STYLES[name]
