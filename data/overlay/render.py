"""Procedural overlay renderer: a `PadState` drawn as an input overlay in one `OverlayStyle`, and composited.

Drawn with OpenCV's anti-aliased primitives, no image assets. Every style's still parts (body, rings, idle buttons)
are drawn once and cached, so a render is a copy plus the pressed buttons, stick caps and trigger fills: fast
enough to feed parser training. Drawing happens in premultiplied RGBA (what OpenCV's anti-aliasing on a
transparent canvas produces), converted to straight alpha at the end.
"""

from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

from nitrogen_jax.actions import STANDARD_BUTTONS
from nitrogen_jax.data.overlay.styles import (
    LAYOUTS,
    STICK_CAP,
    STICK_TRAVEL,
    Color,
    Element,
    OverlayStyle,
    canonical_size,
)

N_BUTTONS = len(STANDARD_BUTTONS)
_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel positions so caps move smoothly
_ONE = 1 << _SHIFT
BUTTON_INDEX = {name: i for i, name in enumerate(STANDARD_BUTTONS)}
TRIGGER_BUTTONS = ("left_trigger", "right_trigger")


@dataclasses.dataclass(frozen=True)
class PadState:
    """What the overlay shows at one instant. buttons: bool [17] in `STANDARD_BUTTONS` order; j_left, j_right:
    float32 [2] (x, y) in [-1, 1], y down; triggers: float32 [2] (left, right) fill level in [0, 1]."""

    buttons: np.ndarray
    j_left: np.ndarray
    j_right: np.ndarray
    triggers: np.ndarray

    def __post_init__(self):
        for name, dtype, shape in (
            ("buttons", bool, (N_BUTTONS,)),
            ("j_left", np.float32, (2,)),
            ("j_right", np.float32, (2,)),
            ("triggers", np.float32, (2,)),
        ):
            value = np.asarray(getattr(self, name), dtype=dtype)
            if value.shape != shape:
                raise ValueError(f"PadState.{name} must have shape {shape}, got {value.shape}")
            object.__setattr__(self, name, value)

    @classmethod
    def neutral(cls) -> PadState:
        return cls(np.zeros(N_BUTTONS, bool), np.zeros(2, np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32))

    def pressed(self) -> list[str]:
        return [n for n, b in zip(STANDARD_BUTTONS, self.buttons, strict=True) if b]


def stack_states(states: list[PadState]) -> dict[str, np.ndarray]:
    """[T] states -> {"buttons": bool [T, 17], "j_left"/"j_right"/"triggers": float32 [T, 2]}."""
    if not states:
        return {
            "buttons": np.zeros((0, N_BUTTONS), bool),
            **{k: np.zeros((0, 2), np.float32) for k in ("j_left", "j_right", "triggers")},
        }
    return {f.name: np.stack([getattr(s, f.name) for s in states]) for f in dataclasses.fields(PadState)}


def unstack_states(arrays: dict[str, np.ndarray]) -> list[PadState]:
    """Inverse of `stack_states`."""
    return [PadState(*(arrays[f.name][i] for f in dataclasses.fields(PadState))) for i in range(len(arrays["buttons"]))]


def _rgba(color: Color, alpha: int = 255) -> tuple[int, int, int, int]:
    """Premultiplied RGBA for OpenCV drawing."""
    r, g, b = color
    return int(round(r * alpha / 255)), int(round(g * alpha / 255)), int(round(b * alpha / 255)), alpha


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _mix(a: Color, b: Color, t: float) -> Color:
    (ar, ag, ab), (br, bg, bb) = a, b
    return int(round(ar + (br - ar) * t)), int(round(ag + (bg - ag) * t)), int(round(ab + (bb - ab) * t))


def _shape(img: np.ndarray, style: OverlayStyle, e: Element, fill: Color | None, line: Color, width: int) -> None:
    """A round or (rounded-)square button filling the element's box."""
    if style.shape == "round" or e.kind == "menu" and e.w == e.h:
        axes = _pt(e.w / 2 - 0.5, e.h / 2 - 0.5)
        if fill is not None:
            cv2.ellipse(img, _pt(e.cx, e.cy), axes, 0, 0, 360, _rgba(fill), -1, cv2.LINE_AA, _SHIFT)
        cv2.ellipse(img, _pt(e.cx, e.cy), axes, 0, 0, 360, _rgba(line), width, cv2.LINE_AA, _SHIFT)
    else:
        _rounded_rect(img, e.cx, e.cy, e.w, e.h, min(e.w, e.h) * 0.22, fill, line, width)


def _rounded_rect(img, cx, cy, w, h, r, fill: Color | None, line: Color | None, width: int) -> None:
    x0, y0, x1, y1 = cx - w / 2 + 0.5, cy - h / 2 + 0.5, cx + w / 2 - 0.5, cy + h / 2 - 0.5
    r = max(0.0, min(r, (x1 - x0) / 2, (y1 - y0) / 2))
    poly = _corner_arcs(x0, y0, x1, y1, r, 5)
    if fill is not None:
        cv2.fillPoly(img, [poly], _rgba(fill), cv2.LINE_AA, _SHIFT)
    if line is not None:
        cv2.polylines(img, [poly], True, _rgba(line), width, cv2.LINE_AA, _SHIFT)


def _label(img: np.ndarray, text: str, cx: float, cy: float, height: float, color: Color, thickness: int = 1) -> None:
    """Text centred on (cx, cy), `height` pixels tall; PlayStation symbols are drawn as shapes."""
    if text in ("cross", "circle", "square", "triangle"):
        return _symbol(img, text, cx, cy, height / 2, color)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = height / 22.0
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    # putText's anti-aliasing does not blend the alpha channel: draw coverage into a mask and blend it ourselves.
    x0, y0 = int(round(cx - tw / 2)) - 2, int(round(cy - th / 2)) - 2
    mask = np.zeros((th + 6, tw + 4), np.uint8)
    cv2.putText(mask, text, (2, th + 2), font, scale, 255, thickness, cv2.LINE_AA)
    _blend_mask(img, mask, x0, y0, color)


def _blend_mask(img: np.ndarray, mask: np.ndarray, x0: int, y0: int, color: Color) -> None:
    """Opaque `color` over premultiplied `img` with coverage `mask` placed at (x0, y0), clipped to the image."""
    h, w = img.shape[:2]
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + mask.shape[1], w), min(y0 + mask.shape[0], h)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    m = mask[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0, None].astype(np.float32) / 255
    roi = img[ay0:ay1, ax0:ax1].astype(np.float32)
    img[ay0:ay1, ax0:ax1] = (roi * (1 - m) + np.array(_rgba(color), np.float32) * m + 0.5).astype(np.uint8)


def _symbol(img: np.ndarray, name: str, cx: float, cy: float, r: float, color: Color) -> None:
    c = _rgba(color)
    if name == "circle":
        cv2.circle(img, _pt(cx, cy), int(r * 0.9 * _ONE), c, 1, cv2.LINE_AA, _SHIFT)
    elif name == "cross":
        for sx in (-1, 1):
            cv2.line(
                img,
                _pt(cx - r * 0.8, cy - sx * r * 0.8),
                _pt(cx + r * 0.8, cy + sx * r * 0.8),
                c,
                1,
                cv2.LINE_AA,
                _SHIFT,
            )
    elif name == "square":
        cv2.rectangle(img, _pt(cx - r * 0.7, cy - r * 0.7), _pt(cx + r * 0.7, cy + r * 0.7), c, 1, cv2.LINE_AA, _SHIFT)
    else:
        tri = np.array([_pt(cx, cy - r * 0.85), _pt(cx + r * 0.85, cy + r * 0.6), _pt(cx - r * 0.85, cy + r * 0.6)])
        cv2.polylines(img, [tri], True, c, 1, cv2.LINE_AA, _SHIFT)


_LABELS = {"left_shoulder": "LB", "right_shoulder": "RB", "left_trigger": "LT", "right_trigger": "RT"}
_PS_LABELS = {"left_shoulder": "L1", "right_shoulder": "R1", "left_trigger": "L2", "right_trigger": "R2"}
_GENERIC_LABELS = {
    "left_shoulder": "L",
    "right_shoulder": "R",
    "left_trigger": "ZL",
    "right_trigger": "ZR",
    "back": "-",
    "start": "+",
}


def _element_label(style: OverlayStyle, e: Element) -> str | None:
    layout = LAYOUTS[style.family]
    if e.kind == "face":
        return layout.face_labels[("south", "east", "west", "north").index(e.name)]
    table = {"xbox": _LABELS, "ps": _PS_LABELS, "generic": _GENERIC_LABELS}[style.family]
    return table.get(e.name)


def _face_color(style: OverlayStyle, e: Element) -> Color | None:
    if style.face_colors is None or e.kind != "face":
        return None
    return style.face_colors[("south", "east", "west", "north").index(e.name)]


def _draw_button(img: np.ndarray, style: OverlayStyle, e: Element, pressed: bool) -> None:
    """A face, D-pad, shoulder or menu button, idle or lit."""
    face = _face_color(style, e)
    fill: Color | None
    if pressed:
        fill = face if face is not None and style.face_fill else style.highlight
        fill = _mix(fill, (255, 255, 255), 0.25) if face is not None and style.face_fill else fill
        line = style.highlight if face is None or not style.face_fill else _mix(face, (255, 255, 255), 0.6)
    else:
        fill = _mix(face, style.body_color, 0.35) if face is not None and style.face_fill else style.button_fill
        line = face if face is not None and style.button_fill is None else style.line_color
    if e.kind == "dpad":
        _rounded_rect(img, e.cx, e.cy, e.w, e.h, 2.0 if style.shape == "round" else 0.5, fill, line, style.line_width)
        if style.labels:  # a small arrowhead pointing outward
            tip = (e.cx + e.dx * e.w * 0.25, e.cy + e.dy * e.h * 0.25)
            side = 2.5
            base = (e.cx - e.dx * 1.5, e.cy - e.dy * 1.5)
            tri = np.array(
                [
                    _pt(*tip),
                    _pt(base[0] + e.dy * side, base[1] + e.dx * side),
                    _pt(base[0] - e.dy * side, base[1] - e.dx * side),
                ]
            )
            cv2.fillPoly(img, [tri], _rgba(_label_color(style, fill, pressed)), cv2.LINE_AA, _SHIFT)
        return
    if e.kind == "shoulder":
        _rounded_rect(
            img, e.cx, e.cy, e.w, e.h, e.h / 2 if style.shape == "round" else 2.0, fill, line, style.line_width
        )
    else:
        _shape(img, style, e, fill, line, style.line_width)
    text = _element_label(style, e)
    if style.labels and text:
        color = _label_color(style, fill, pressed)
        if e.kind == "face" and face is not None and not style.face_fill and not pressed:
            color = face
        _label(img, text, e.cx, e.cy, min(e.h * 0.7, 11.0), color)


def _label_color(style: OverlayStyle, fill: Color | None, pressed: bool) -> Color:
    """Readable on whatever is under the label."""
    if fill is None:
        return style.label_color if not pressed else style.highlight
    return (20, 20, 24) if sum(fill) > 3 * 140 else (240, 240, 244)


def _draw_trigger_frame(img: np.ndarray, style: OverlayStyle, e: Element, pressed: bool) -> None:
    line = style.highlight if pressed else style.line_color
    fill = style.button_fill
    _rounded_rect(img, e.cx, e.cy, e.w, e.h, 2.0, fill, line, style.line_width + (1 if pressed else 0))


def _trigger_inner(style: OverlayStyle, e: Element) -> tuple[float, float, float, float]:
    pad = style.line_width + 1.5
    return e.cx - e.w / 2 + pad, e.cy - e.h / 2 + pad, e.cx + e.w / 2 - pad, e.cy + e.h / 2 - pad


def _draw_trigger_fill(img: np.ndarray, style: OverlayStyle, e: Element, level: float) -> None:
    """Fill proportional to `level` (sub-pixel, via fixed-point coordinates)."""
    if level <= 0:
        return
    x0, y0, x1, y1 = _trigger_inner(style, e)
    if LAYOUTS[style.family].trigger_axis == "x":
        x1 = x0 + (x1 - x0) * min(level, 1.0)
    else:
        y0 = y1 - (y1 - y0) * min(level, 1.0)
    poly = np.array([_pt(x0, y0), _pt(x1, y0), _pt(x1, y1), _pt(x0, y1)], np.int32)
    cv2.fillPoly(img, [poly], _rgba(style.trigger_fill), cv2.LINE_AA, _SHIFT)


def _draw_stick_ring(img: np.ndarray, style: OverlayStyle, e: Element) -> None:
    r = e.w / 2
    if style.button_fill is not None:
        cv2.circle(
            img,
            _pt(e.cx, e.cy),
            int(r * _ONE),
            _rgba(_mix(style.button_fill, style.body_color, 0.5)),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    cv2.circle(img, _pt(e.cx, e.cy), int(r * _ONE), _rgba(style.line_color), style.line_width, cv2.LINE_AA, _SHIFT)
    if style.shape == "square":  # a gate: the octagon real sticks move in
        octo = [
            _pt(e.cx + r * 0.8 * np.cos(a), e.cy + r * 0.8 * np.sin(a)) for a in np.arange(8) * np.pi / 4 + np.pi / 8
        ]
        cv2.polylines(
            img,
            [np.array(octo, np.int32)],
            True,
            _rgba(_mix(style.line_color, style.body_color, 0.5)),
            1,
            cv2.LINE_AA,
            _SHIFT,
        )


def _draw_stick_cap(img: np.ndarray, style: OverlayStyle, e: Element, value: np.ndarray, clicked: bool) -> None:
    r = e.w / 2
    x = e.cx + float(np.clip(value[0], -1, 1)) * r * STICK_TRAVEL
    y = e.cy + float(np.clip(value[1], -1, 1)) * r * STICK_TRAVEL
    fill = style.highlight if clicked else style.cap_color
    rad = int(r * STICK_CAP * _ONE)
    cv2.circle(img, _pt(x, y), rad, _rgba(fill), -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, _pt(x, y), rad, _rgba(_mix(style.line_color, (0, 0, 0), 0.3)), 1, cv2.LINE_AA, _SHIFT)


def _draw_body(img: np.ndarray, style: OverlayStyle) -> None:
    """The controller silhouette (xbox, ps) or a rounded board (generic), premultiplied at `body_alpha`."""
    w, h = canonical_size(style.family)
    fill, line = _rgba(style.body_color, style.body_alpha), _rgba(style.line_color, style.body_alpha)
    if style.family == "generic":
        _rounded_rect_alpha(img, w / 2, h / 2, w - 2, h - 2, 14, fill, line)
        return
    polys = [_rounded_poly(w / 2, 79, w - 40, 108, 28)]  # reaches below the lower sticks' rings
    for gx in (w * 0.23, w * 0.77):  # the grips
        polys.append(
            np.array(
                [_pt(gx + 30 * np.cos(a), 128 + 30 * np.sin(a) * 1.15) for a in np.linspace(0, 2 * np.pi, 40)], np.int32
            )
        )
    mask = np.zeros(img.shape[:2], np.uint8)
    for p in polys:
        cv2.fillPoly(mask, [p], 255, cv2.LINE_AA, _SHIFT)
    outline = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8))
    a = mask.astype(np.float32)[..., None] / 255
    img[:] = (np.array(fill, np.float32) * a).astype(np.uint8)
    o = outline.astype(np.float32)[..., None] / 255 * 0.8
    img[:] = (img * (1 - o) + np.array(line, np.float32) * o * a).astype(np.uint8)
    if style.family == "ps":  # the touchpad
        _rounded_rect(img, w / 2, 50, 58, 34, 5, _mix(style.body_color, style.line_color, 0.15), style.line_color, 1)


def _rounded_poly(cx, cy, w, h, r) -> np.ndarray:
    return _corner_arcs(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, r, 7)


def _corner_arcs(x0: float, y0: float, x1: float, y1: float, r: float, points: int) -> np.ndarray:
    """The outline of a rectangle with corners rounded to radius r, `points` per quarter circle, in fixed point."""
    pts = []
    for (ax, ay), start in (
        ((x1 - r, y0 + r), -90),
        ((x1 - r, y1 - r), 0),
        ((x0 + r, y1 - r), 90),
        ((x0 + r, y0 + r), 180),
    ):
        for k in range(points):
            t = np.deg2rad(start + 90 / (points - 1) * k)
            pts.append(_pt(ax + r * np.cos(t), ay + r * np.sin(t)))
    return np.array(pts, np.int32)


def _rounded_rect_alpha(img, cx, cy, w, h, r, fill, line) -> None:
    poly = _rounded_poly(cx, cy, w, h, r)
    cv2.fillPoly(img, [poly], fill, cv2.LINE_AA, _SHIFT)
    cv2.polylines(img, [poly], True, line, 1, cv2.LINE_AA, _SHIFT)


@functools.lru_cache(maxsize=320)  # the named styles and parser training's random ones (parser_data)
def _base(style: OverlayStyle) -> np.ndarray:
    """Premultiplied RGBA of everything that never moves: body, rings, idle buttons, empty trigger bars."""
    w, h = canonical_size(style.family)
    img = np.zeros((h, w, 4), np.uint8)
    if style.body:
        _draw_body(img, style)
    for e in LAYOUTS[style.family].elements:
        if e.kind == "stick":
            _draw_stick_ring(img, style, e)
        elif e.kind == "trigger":
            _draw_trigger_frame(img, style, e, False)
            if style.labels:  # beside the bar, where the fill never covers it
                if LAYOUTS[style.family].trigger_axis == "x":
                    side = -1 if e.name == "left_trigger" else 1
                    at = (e.cx + side * (e.w / 2 + 9), e.cy)
                else:
                    at = (e.cx, e.cy - e.h / 2 - 6)
                text = _element_label(style, e)
                assert text is not None  # every family's label table names both triggers
                _label(
                    img,
                    text,
                    *at,
                    7,
                    _label_color(style, None, False) if style.body else style.line_color,
                )
        else:
            _draw_button(img, style, e, False)
    img.setflags(write=False)
    return img


def render_premultiplied(style: OverlayStyle, state: PadState | None) -> np.ndarray:
    """`render_overlay` in premultiplied alpha (what `composite` blends with; skips the conversion)."""
    state = PadState.neutral() if state is None else state
    img = _base(style).copy()
    for e in LAYOUTS[style.family].elements:
        if e.kind == "stick":
            clicked = bool(state.buttons[BUTTON_INDEX["left_thumb" if e.name == "j_left" else "right_thumb"]])
            _draw_stick_cap(img, style, e, getattr(state, e.name), clicked)
        elif e.kind == "trigger":
            side = TRIGGER_BUTTONS.index(e.name)
            if state.buttons[BUTTON_INDEX[e.name]]:
                _draw_trigger_frame(img, style, e, True)
            _draw_trigger_fill(img, style, e, float(state.triggers[side]))
        elif state.buttons[BUTTON_INDEX[e.name]]:
            _draw_button(img, style, e, True)
    return img


def render_overlay(style: OverlayStyle, state: PadState | None) -> np.ndarray:
    """RGBA uint8 [H, W, 4] (straight alpha) at canonical_size(style.family). state None: the neutral render,
    which is the style's template."""
    return cv2.cvtColor(render_premultiplied(style, state), cv2.COLOR_mRGBA2RGBA)


def neutral_template(style: OverlayStyle, background: Color = (0, 0, 0)) -> np.ndarray:
    """RGB uint8 [H, W, 3]: the neutral render over a flat `background`."""
    premul = render_premultiplied(style, None).astype(np.float32)
    a = premul[..., 3:4] / 255
    return np.clip(premul[..., :3] + np.array(background, np.float32) * (1 - a), 0, 255).round().astype(np.uint8)


def composite(
    frame: np.ndarray,
    overlay_rgba: np.ndarray,
    *,
    x: float,
    y: float,
    scale: float,
    opacity: float,
    premultiplied: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw `overlay_rgba` scaled by `scale` with its top-left at (x, y) and `opacity` over `frame` (RGB uint8).

    Returns (new frame, 2x3 affine mapping template-frame coords -> frame coords). Parts outside the frame are
    clipped. Pass `premultiplied=True` with `render_premultiplied` output to skip a conversion.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"composite: frame must be RGB uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
    if overlay_rgba.ndim != 3 or overlay_rgba.shape[2] != 4:
        raise ValueError(f"composite: overlay must be RGBA [H, W, 4], got {overlay_rgba.shape}")
    if not scale > 0 or not 0 <= opacity <= 1:
        raise ValueError(f"composite: scale must be > 0 and opacity in [0, 1], got scale={scale}, opacity={opacity}")
    h, w = overlay_rgba.shape[:2]
    premul = overlay_rgba if premultiplied else cv2.cvtColor(overlay_rgba, cv2.COLOR_RGBA2mRGBA)
    # The overlay covers [x, x + w*scale) x [y, y + h*scale); in OpenCV's pixel-centre convention template pixel i
    # lands at frame pixel scale*i + x + scale/2 - 1/2, so warpAffine(frame, affine, (w, h), WARP_INVERSE_MAP)
    # rectifies it exactly.
    affine = np.array([[scale, 0.0, x + 0.5 * scale - 0.5], [0.0, scale, y + 0.5 * scale - 0.5]], np.float64)
    x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    x1, y1 = min(int(np.ceil(x + w * scale)), frame.shape[1]), min(int(np.ceil(y + h * scale)), frame.shape[0])
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out, affine
    src = premul
    if scale < 0.8:  # warpAffine has no area filter: shrink with INTER_AREA first, then place at sub-pixel offset
        src = cv2.resize(premul, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    sx, sy = scale * w / src.shape[1], scale * h / src.shape[0]  # from src pixels to frame pixels
    local = np.array([[sx, 0.0, x - x0 + 0.5 * sx - 0.5], [0.0, sy, y - y0 + 0.5 * sy - 0.5]])
    warped = cv2.warpAffine(
        src, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0)
    )
    warped = warped.astype(np.float32)
    a = warped[..., 3:4] * (opacity / 255)
    roi = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(roi * (1 - a) + warped[..., :3] * opacity + 0.5, 0, 255).astype(np.uint8)
    return out, affine
