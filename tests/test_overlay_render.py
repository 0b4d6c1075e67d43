"""The overlay renderer's ground truth round-trips: what the truth says is pressed is what the pixels show, and the
synthetic videos decode with the frames, fps and truth they claim."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from nitrogen_jax.actions import STANDARD_BUTTONS
from nitrogen_jax.data.overlay.render import (
    BUTTON_INDEX,
    N_BUTTONS,
    PadState,
    _base,
    composite,
    neutral_template,
    render_overlay,
    render_premultiplied,
    stack_states,
)
from nitrogen_jax.data.overlay.styles import (
    FAMILIES,
    HELDOUT_STYLES,
    LAYOUTS,
    STICK_TRAVEL,
    STYLES,
    TRAIN_STYLES,
    canonical_size,
    element_boxes,
    random_style,
)
from nitrogen_jax.data.overlay.synth import load_synth_video, make_overlay_video, random_pad_stream

ALL_STYLES = sorted(STYLES)


def _state(buttons=(), j_left=(0, 0), j_right=(0, 0), triggers=(0, 0)) -> PadState:
    b = np.zeros(N_BUTTONS, bool)
    b[[BUTTON_INDEX[n] for n in buttons]] = True
    return PadState(b, np.array(j_left, np.float32), np.array(j_right, np.float32), np.array(triggers, np.float32))


def _outside(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    out = mask.copy()
    out[max(y, 0) : y + h, max(x, 0) : x + w] = False
    return out


@pytest.mark.parametrize("name", ALL_STYLES)
def test_every_style_renders_its_template(name):
    style = STYLES[name]
    w, h = canonical_size(style.family)
    neutral = render_overlay(style, None)
    assert neutral.shape == (h, w, 4) and neutral.dtype == np.uint8
    assert (neutral[..., 3] > 0).mean() > 0.1, "the overlay draws something opaque"
    np.testing.assert_array_equal(neutral, render_overlay(style, PadState.neutral()))
    template = neutral_template(style)
    assert template.shape == (h, w, 3) and template.dtype == np.uint8 and template.std() > 10
    for x, y, bw, bh in element_boxes(style.family).values():  # every element fits in the template frame
        assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h, (name, (x, y, bw, bh))


# Parser training draws looks at random (`random_style`): they must honour the same contract as the named ones.
RANDOM_STYLES = [random_style(FAMILIES[i % 3], np.random.default_rng(i)) for i in range(12)]


@pytest.mark.parametrize("style", [STYLES[n] for n in ALL_STYLES] + RANDOM_STYLES, ids=lambda s: s.name)
def test_pressed_button_changes_pixels_only_inside_its_element(style):
    name = style.name
    boxes = element_boxes(style.family)
    neutral = render_premultiplied(style, None).astype(np.int16)  # premultiplied: what shows, at any opacity
    for button in STANDARD_BUTTONS:
        triggers = [0.0, 0.0]
        if button in ("left_trigger", "right_trigger"):  # the contract: trigger buttons are `triggers > 0.5`
            triggers[("left_trigger", "right_trigger").index(button)] = 0.8
        pressed = render_premultiplied(style, _state([button], triggers=triggers)).astype(np.int16)
        changed = np.abs(pressed - neutral).max(-1) > 8
        assert changed.sum() > 15, f"{name}: pressing {button} is (nearly) invisible: {changed.sum()} px"
        stray = _outside(changed, boxes[button])
        assert not stray.any(), f"{name}: pressing {button} changed {stray.sum()} px outside {boxes[button]}"


def _cap_centroid(style, stick: str, value) -> tuple[float, float]:
    """Centroid of the pixels where the render differs from the style's still parts (no caps): the cap."""
    x, y, w, h = element_boxes(style.family)[stick]
    a = render_premultiplied(style, _state(**{stick: value})).astype(np.float32)[y : y + h, x : x + w]
    b = _base(style).astype(np.float32)[y : y + h, x : x + w]
    weight = np.abs(a - b).sum(-1)
    ys, xs = np.mgrid[y : y + h, x : x + w]
    return (weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()


@pytest.mark.parametrize(
    "style",
    [STYLES[n] for n in ("xbox_filled_dark", "ps_outline_light", "generic_light_square", "xbox_neon")]
    + RANDOM_STYLES[:3],
    ids=lambda s: s.name,
)
@pytest.mark.parametrize("stick", ["j_left", "j_right"])
def test_stick_cap_centroid_follows_the_stick(style, stick):
    ring = next(e for e in LAYOUTS[style.family].elements if e.name == stick)
    travel = ring.w / 2 * STICK_TRAVEL  # pixels at full deflection
    for v in ([-0.7, 0], [-0.5, 0.3], [0, 0], [0.35, -0.6], [0.45, 0.45], [0.6, -0.2]):  # cap inside its ring
        cx, cy = _cap_centroid(style, stick, np.array(v, np.float32))
        assert abs(cx - ring.cx - v[0] * travel) < 0.6 and abs(cy - ring.cy - v[1] * travel) < 0.6, (v, cx, cy)
    for axis in (0, 1):  # at full deflection the cap still moves outward (it may cover the ring there)
        for sign in (-1, 1):
            d = np.zeros(2, np.float32)
            d[axis] = 0.7 * sign
            inner = _cap_centroid(style, stick, d)[axis]
            d[axis] = sign
            outer = _cap_centroid(style, stick, d)[axis]
            assert sign * (outer - inner) > 0.1 * travel, (axis, sign, inner, outer)


@pytest.mark.parametrize("name", ["xbox_filled_dark", "ps_white", "generic_board_dark", "generic_outline"])
def test_trigger_fill_is_proportional(name):
    style = STYLES[name]
    for side, trig in enumerate(("left_trigger", "right_trigger")):
        x, y, w, h = element_boxes(style.family)[trig]
        neutral = render_premultiplied(style, None).astype(np.int16)[y : y + h, x : x + w]
        areas = []
        for level in (0.25, 0.5, 0.75, 1.0):
            levels = [0.0, 0.0]
            levels[side] = level
            img = render_premultiplied(style, _state(triggers=levels)).astype(np.int16)[y : y + h, x : x + w]
            areas.append((np.abs(img - neutral).max(-1) / 255.0).sum())
        ratios = np.array(areas) / areas[-1]
        np.testing.assert_allclose(ratios, [0.25, 0.5, 0.75, 1.0], atol=0.04, err_msg=f"{name} {trig}: {areas}")


def test_random_styles_are_reproducible_varied_and_checked():
    again = [random_style(FAMILIES[i % 3], np.random.default_rng(i)) for i in range(12)]
    assert again == RANDOM_STYLES, "a random style is a pure function of its generator's seed"
    assert len({(s.body_color, s.line_color, s.highlight, s.shape, s.body) for s in RANDOM_STYLES}) == 12
    assert {s.family for s in RANDOM_STYLES} == set(FAMILIES)
    assert not {s.name for s in RANDOM_STYLES} & set(STYLES)
    with pytest.raises(ValueError, match="unknown family 'snes'"):
        random_style("snes", np.random.default_rng(0))


def test_some_random_styles_light_presses_in_the_outline_colour():
    """Accent looks (neon, glow): presses lit in nearly the outline's colour, which the other random looks keep at
    least 200 away. The contract test above covers two of them (seeds 6 and 10)."""

    def near(style) -> bool:
        return sum(abs(a - b) for a, b in zip(style.highlight, style.line_color, strict=True)) < 200

    share = np.mean([near(random_style(FAMILIES[i % 3], np.random.default_rng(100 + i))) for i in range(200)])
    assert 0.15 < share < 0.4, share
    assert near(RANDOM_STYLES[6]) and near(RANDOM_STYLES[10])


def test_heldout_and_train_styles_are_disjoint_and_cover_every_family():
    assert not set(HELDOUT_STYLES) & set(TRAIN_STYLES)
    assert set(HELDOUT_STYLES) | set(TRAIN_STYLES) == set(STYLES)
    for family in FAMILIES:
        assert any(STYLES[s].family == family for s in HELDOUT_STYLES), family
        assert sum(STYLES[s].family == family for s in TRAIN_STYLES) >= 3, family


def test_composite_affine_rectifies_back_to_the_template():
    style = STYLES["ps_filled_dark"]
    w, h = canonical_size(style.family)
    for scale, (x, y) in ((0.7, (31.3, 12.6)), (1.15, (200.0, 40.5))):
        frame = np.zeros((360, 640, 3), np.uint8)
        out, affine = composite(frame, render_overlay(style, None), x=x, y=y, scale=scale, opacity=1.0)
        rectified = cv2.warpAffine(out, affine, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        err = np.abs(rectified.astype(np.int16) - neutral_template(style)).mean()
        assert err < 6, f"scale {scale}: mean abs error {err:.1f} after rectifying with the returned affine"
        assert not out[: int(y) - 1].any() and not out[:, : int(x) - 1].any(), "nothing drawn before the top-left"


def test_random_pad_stream_exercises_every_input():
    states = random_pad_stream(600, 60, np.random.default_rng(3))
    arr = stack_states(states)
    assert arr["buttons"].any(0).all(), [
        b for b, on in zip(STANDARD_BUTTONS, np.asarray(arr["buttons"].any(0)), strict=True) if not on
    ]
    for stick in ("j_left", "j_right"):
        assert np.abs(arr[stick]).max() >= 0.99 and np.abs(arr[stick]).max() <= 1.0
        assert np.abs(np.diff(arr[stick], axis=0)).max() < 1.0, "stick paths move smoothly, no teleports"
    t = arr["triggers"]
    assert t.min() >= 0 and t.max() <= 1 and ((t > 0) & (t < 0.9)).any(), "triggers ramp through partial levels"
    np.testing.assert_array_equal(
        arr["buttons"][:, [BUTTON_INDEX["left_trigger"], BUTTON_INDEX["right_trigger"]]], t > 0.5
    )


def _decode(path) -> tuple[int, float, str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate
        assert rate is not None
        return frames, float(rate), stream.codec_context.name


@pytest.mark.parametrize("fps,codec", [(30, "h264"), (60, "mp4v")])
def test_video_decodes_with_its_frames_fps_and_truth(tmp_path, fps, codec):
    video = make_overlay_video(
        tmp_path / "v.mp4",
        game="ale:breakout",
        style="xbox_filled_dark",
        seed=5,
        fps=fps,
        seconds=1.5,
        bitrate_kbps=800,
        codec=codec,
        lag_ms=50,
        opacity=0.9,
    )
    frames, rate, codec_name = _decode(video.path)
    assert frames == int(1.5 * fps) == len(video.truth) == len(video.actions)
    assert rate == fps
    assert codec_name == {"h264": "h264", "mp4v": "mpeg4"}[codec]
    again = load_synth_video(video.path)
    assert (again.fps, again.style, again.family, again.bbox_overlay, again.bbox_game, again.has_overlay) == (
        video.fps,
        video.style,
        video.family,
        video.bbox_overlay,
        video.bbox_game,
        True,
    )
    np.testing.assert_allclose(again.overlay_affine, video.overlay_affine)
    for a, b in zip(stack_states(again.truth).values(), stack_states(video.truth).values(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The overlay is really in the decoded frames where the truth says: the rectified crop matches its template.
    w, h = canonical_size(video.family)
    cap = cv2.VideoCapture(str(video.path))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    rectified = cv2.warpAffine(
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
        video.overlay_affine,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    )
    expected = render_overlay(STYLES[video.style], video.truth[0]).astype(np.float32)
    opaque = expected[..., 3] >= 230  # where the game barely shows through
    assert np.corrcoef(expected[..., :3][opaque].ravel(), rectified[opaque].ravel())[0, 1] > 0.9


def test_lag_shifts_the_truth_by_whole_frames(tmp_path):
    video = make_overlay_video(
        tmp_path / "lag.mp4",
        game="ale:pong",
        style="generic_outline",
        seed=2,
        fps=30,
        seconds=1.0,
        lag_ms=100,
        distractors=False,
    )
    assert video.lag_frames == 3
    truth, actions = stack_states(video.truth), stack_states(video.actions)
    for key in truth:
        np.testing.assert_array_equal(truth[key][3:], actions[key][:-3])
        assert not np.array_equal(truth[key], actions[key]) or not truth[key].any()


def test_no_overlay_video(tmp_path):
    video = make_overlay_video(
        tmp_path / "none.mp4", game="retro:Airstriker-Genesis", style=None, seed=1, fps=30, seconds=1.0
    )
    assert not video.has_overlay and video.truth == [] and video.bbox_overlay == (0, 0, 0, 0)
    assert len(video.actions) == 30 and _decode(video.path)[0] == 30
    assert not load_synth_video(video.path).has_overlay


def test_make_videos_command_and_contact_sheet(tmp_path):
    import json

    from nitrogen_jax.data.overlay import contact_sheet, synth

    args = synth.MakeOverlayVideosArgs(out=tmp_path / "set", count=1, no_overlay=1, split="heldout", seconds=0.5)
    assert synth.run(args) == 0
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert [m["has_overlay"] for m in manifest] == [True, False]
    assert manifest[0]["style"] in HELDOUT_STYLES and all(m["game"] in synth.HELDOUT_GAMES for m in manifest)
    assert all(load_synth_video(tmp_path / "set" / m["video"]).num_frames == int(0.5 * m["fps"]) for m in manifest)
    out = tmp_path / "sheet.png"
    assert contact_sheet.run(contact_sheet.ContactSheetArgs(out=out)) == 0
    named = cv2.imread(str(out))
    assert named is not None and named.shape[0] > 100
    assert contact_sheet.run(contact_sheet.ContactSheetArgs(out=out, random=3, columns=3)) == 0
    random_looks = cv2.imread(str(out))
    assert random_looks is not None
    assert random_looks.shape[0] < named.shape[0] and random_looks.std() > 10  # one row of three, drawn


def test_bad_inputs_name_what_was_expected(tmp_path):
    with pytest.raises(ValueError, match="unknown overlay style 'nope'"):
        make_overlay_video(tmp_path / "a.mp4", game="ale:pong", style="nope", seed=0)
    with pytest.raises(ValueError, match="unknown game 'ale:zork'"):
        make_overlay_video(tmp_path / "b.mp4", game="ale:zork", style=None, seed=0, seconds=0.1)
    with pytest.raises(ValueError, match="opacity"):
        make_overlay_video(tmp_path / "c.mp4", game="ale:pong", style=None, seed=0, opacity=0.2)
    with pytest.raises(ValueError, match="PadState.j_left must have shape"):
        PadState(np.zeros(N_BUTTONS, bool), np.zeros(3), np.zeros(2), np.zeros(2))
    with pytest.raises(FileNotFoundError, match="no truth file"):
        load_synth_video(tmp_path / "missing.mp4")
