"""The overlay parser: grid read-out, API checks, save/load, shipped weights and a short training run.

The floors are what a correct parser clears with margin and a real bug (sticks swapped, y flipped, buttons out of
order, templates ignored) does not: such bugs put stick R^2 near or below zero and button accuracy near the share of
unpressed buttons (about 0.7 on these examples).
"""

from __future__ import annotations

import dataclasses
import json

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nitrogen_jax.data.overlay.parser import (
    CONFIG_FILE,
    PARSER_INPUT_HW,
    STICK_GRID,
    THUMB_INDICES,
    OverlayParser,
    ParsedPads,
    ParserConfig,
    bilinear_sample,
    cap_lattice,
    grid_centres,
    grid_expectation,
    rectify,
    resize_to_input,
)
from nitrogen_jax.data.overlay.parser_data import (
    Degradation,
    RenderedPairs,
    background_patch,
    draw_opacity,
    gameplay_clips,
    render_example,
    template_input,
)
from nitrogen_jax.data.overlay.render import PadState, composite, render_overlay
from nitrogen_jax.data.overlay.styles import FAMILIES, HELDOUT_STYLES, STYLES, TRAIN_STYLES, canonical_size
from nitrogen_jax.data.overlay.synth import HELDOUT_GAMES
from nitrogen_jax.data.overlay.train_parser import (
    TrainParserArgs,
    init_recipe,
    reading_metrics,
    stick_grid_target,
    train_parser,
)

TINY = ParserConfig(dims=(16, 32, 48), depths=(1, 1, 1), heads=(1, 1, 2), decoder_dim=32, head_dim=48)
H, W = PARSER_INPUT_HW


@pytest.fixture(scope="module")
def heldout_clips():
    return gameplay_clips(HELDOUT_GAMES, 24, seed=123)


def read_per_style(parser: OverlayParser, styles, clips, n_per_style: int, seed: int):
    """Fresh examples of each style read through the public `parse` (one template per call); stacked truth and
    readings."""
    reads, truths = [], []
    for k, style in enumerate(styles):
        src = RenderedPairs([style], clips, seed=seed + k, num_streams=2, stream_len=120)
        ex = [src[i] for i in range(n_per_style)]
        parsed = parser.parse(
            np.stack([e["prev"] for e in ex]), np.stack([e["cur"] for e in ex]), template_input(STYLES[style])
        )
        reads.append(dataclasses.asdict(parsed))
        truths.append({k2: np.stack([e[k2] for e in ex]) for k2 in ("buttons", "j_left", "j_right", "triggers")})
    cat = lambda ds: {k: np.concatenate([d[k] for d in ds]) for k in ds[0]}  # noqa: E731
    return cat(reads), cat(truths)


def test_rendered_pairs_mix_in_random_looks_only_when_asked(heldout_clips):
    named = {template_input(STYLES[s]).tobytes() for s in TRAIN_STYLES[:2]}
    plain = RenderedPairs(TRAIN_STYLES[:2], heldout_clips, seed=5, num_streams=2, stream_len=60)
    assert all(plain[i]["template"].tobytes() in named for i in range(12))
    mixed = RenderedPairs(
        TRAIN_STYLES[:2],
        heldout_clips,
        seed=5,
        num_streams=2,
        stream_len=60,
        random_style_share=1.0,
        num_random_styles=9,
    )
    examples = [mixed[i] for i in range(40)]
    assert not any(e["template"].tobytes() in named for e in examples)
    assert {int(e["family"]) for e in examples} == {0, 1, 2}, "random looks span the families"
    assert len({e["template"].tobytes() for e in examples}) > 5
    with pytest.raises(ValueError, match="random_style_share"):
        RenderedPairs(TRAIN_STYLES[:1], heldout_clips, seed=0, random_style_share=1.5)


def test_cap_click_parser_reads_thumbs_and_round_trips(tmp_path):
    """The cap click read-out's parser parses, saves and loads as itself (its clicks are its own outputs)."""
    parser = OverlayParser.init(dataclasses.replace(TINY, cap_click=True), seed=1)
    crops = np.random.default_rng(0).integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    read = parser.parse(crops, crops, crops[0])
    assert read.buttons.shape == (3, 17) and ((read.buttons >= 0) & (read.buttons <= 1)).all()
    parser.save(tmp_path)
    again = OverlayParser.load(tmp_path)
    assert again.config.cap_click and "cap_click" in again.params
    np.testing.assert_allclose(again.parse(crops, crops, crops[0]).buttons, read.buttons, atol=2e-3)


def test_a_config_saved_before_cap_click_loads_as_box_clicks(tmp_path):
    """Weights saved before the cap read-out existed have no `cap_click` in their config; they load as they were."""
    old = OverlayParser.init(dataclasses.replace(TINY, cap_click=False), seed=2)
    old.save(tmp_path)
    stored = json.loads((tmp_path / CONFIG_FILE).read_text())
    del stored["config"]["cap_click"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(stored))
    again = OverlayParser.load(tmp_path)
    assert not again.config.cap_click and "cap_click" not in again.params
    assert ParserConfig().cap_click  # while new configs read clicks at the cap


def test_exact_share_rectifies_without_error():
    """An example drawn for exact rectification is the example with the error ranges set to zero; otherwise the
    drawn error moves the crop."""
    style, bg = STYLES["xbox_filled_dark"], np.full((60, 80, 3), 20, np.uint8)

    def crop(deg: Degradation) -> np.ndarray:
        return render_example(style, PadState.neutral(), PadState.neutral(), (bg, bg), np.random.default_rng(3), deg)[
            "cur"
        ]

    reference = crop(Degradation(shift_px=0.0, rotation_deg=0.0, scale_error=0.0, exact_share=1.0))
    np.testing.assert_array_equal(crop(Degradation(exact_share=1.0)), reference)
    assert np.abs(crop(Degradation(exact_share=0.0)).astype(np.int16) - reference).max() > 20


def test_full_opacity_share_draws_opaque_overlays():
    """A share of examples is drawn at opacity exactly 1 (which uniform draws never hit); at share 0 the stream of
    draws is the one from before the option existed."""

    def draws(deg: Degradation, n: int = 4000) -> np.ndarray:
        rng = np.random.default_rng(7)
        return np.array([draw_opacity(deg, rng) for _ in range(n)])

    plain = draws(Degradation())
    assert (plain < 1).all() and plain.min() >= 0.5
    np.testing.assert_array_equal(plain, np.random.default_rng(7).uniform(0.5, 1.0, 4000))
    mixed = draws(Degradation(full_opacity_share=0.25))
    assert abs((mixed == 1).mean() - 0.25) < 0.03 and mixed.min() >= 0.5
    assert (draws(Degradation(full_opacity_share=1.0), 50) == 1).all()


def test_sprites_draw_blobs_on_gameplay_only_when_asked():
    """`sprite_share` puts cap-sized blobs on gameplay backgrounds; at 0 the patch is the one from before."""
    frame = np.random.default_rng(0).integers(100, 160, (210, 160, 3), dtype=np.uint8)
    gameplay = 0
    for seed in range(20):
        plain, with_sprites = (background_patch(frame, (120, 80), np.random.default_rng(seed), s) for s in (0.0, 1.0))
        if plain.min() >= 100:  # gameplay, not the flat border colour (< 60), which gets no sprites
            diff = np.abs(with_sprites.astype(np.int16) - plain).max(-1) > 40
            assert 0 < diff.sum() < diff.size / 2, seed  # blobs, not a repaint
            gameplay += 1
        else:
            np.testing.assert_array_equal(with_sprites, plain)
    assert gameplay >= 15


def test_line_sprites_are_long_and_thin():
    """With `line_share` 1 the sprites are `game_line`s: pieces at least 24 px long yet at most 5 px thick on
    average (area <= 5 x length), which no cap-sized blob of `game_sprites` is (one that long is 10 px wide)."""
    frame = np.full((210, 160, 3), 40, np.uint8)

    def patches_with_a_line(line_share: float) -> int:
        found = 0
        for seed in range(30):
            patch = background_patch(frame, (120, 80), np.random.default_rng(seed), 1.0, line_share=line_share)
            changed = (np.abs(patch.astype(np.int16) - 40).max(-1) > 30).astype(np.uint8)
            _, _, stats, _ = cv2.connectedComponentsWithStats(changed)
            length = stats[1:, [cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT]].max(1)
            found += bool(((length >= 24) & (stats[1:, cv2.CC_STAT_AREA] <= 5 * length)).any())
        return found

    assert patches_with_a_line(0.0) == 0
    assert patches_with_a_line(1.0) >= 10
    with pytest.raises(ValueError, match="sprite_line_share"):
        TrainParserArgs(sprite_line_share=1.5)


def test_sprites_move_between_the_two_frames_only_when_asked():
    """With `sprite_motion` the current frame's sprites are the previous frame's, moved; without it the two frames
    of a still pad over a still background are the same."""
    style, bg = STYLES["generic_outline"], np.random.default_rng(1).integers(100, 160, (210, 160, 3), dtype=np.uint8)

    def moved(motion: int) -> int:
        deg = Degradation(sprite_share=1.0, sprite_motion=motion, jpeg_quality=(95, 95))
        examples = [
            render_example(style, PadState.neutral(), PadState.neutral(), (bg, bg), np.random.default_rng(i), deg)
            for i in range(12)
        ]
        return sum(int(np.abs(e["prev"].astype(np.int16) - e["cur"]).max() > 40) for e in examples)

    assert moved(0) == 0
    assert moved(12) >= 8


def test_grid_expectation_reads_cell_centres_x_then_y():
    c = grid_centres()
    assert c[0] == -1 and c[-1] == 1 and len(c) == STICK_GRID
    logits = np.full((2, STICK_GRID, STICK_GRID), -1e4, np.float32)
    logits[0, 2, 9] = 0  # row (y) 2, column (x) 9
    logits[1, 10, 0] = 0  # bottom-left: y down is +1
    xy = np.asarray(grid_expectation(jnp.asarray(logits)))
    np.testing.assert_allclose(xy, [[c[9], c[2]], [-1, 1]], atol=1e-6)
    np.testing.assert_allclose(grid_expectation(jnp.zeros((1, STICK_GRID, STICK_GRID))), [[0, 0]], atol=1e-6)


def test_stick_target_expectation_is_the_stick_position():
    xy = jnp.asarray([[0.37, -0.81], [1.0, -1.0], [0.0, 0.0]], jnp.float32)
    target = stick_grid_target(xy)
    np.testing.assert_allclose(target.sum((-1, -2)), 1, atol=1e-6)
    np.testing.assert_allclose(grid_expectation(jnp.log(target + 1e-12)), xy, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_parser():
    return OverlayParser(TINY, OverlayParser.init(TINY, seed=3).params, batch_size=4)


@pytest.mark.parametrize("style", ["xbox_filled_dark", "ps_outline_light", "generic_pastel"])
def test_cap_lattice_lands_on_the_drawn_cap(style):
    """The click read-out samples where the renderer draws each cap: at the sticks' positions the clicked and the
    unclicked render differ, at the mirrored positions (where no cap is) they do not."""
    family = FAMILIES.index(STYLES[style].family)
    sticks = np.array([[0.9, -0.7], [-0.5, 1.0]], np.float32)

    def drawn(clicked: bool) -> np.ndarray:
        buttons = np.zeros(17, bool)
        buttons[list(THUMB_INDICES)] = clicked
        rgba = render_overlay(STYLES[style], PadState(buttons, sticks[0], sticks[1], np.zeros(2, np.float32)))
        return resize_to_input(rgba).astype(np.float32)[None]

    change = jnp.asarray(np.abs(drawn(True) - drawn(False)).sum(-1, keepdims=True))

    def change_at(xy: np.ndarray) -> np.ndarray:  # mean change over a lattice within half the cap's radius
        at = cap_lattice(jnp.asarray(xy)[None], 3, 0.5)[0, family]  # [2, L, 2]
        u, v = at[..., 0].reshape(1, -1) * W - 0.5, at[..., 1].reshape(1, -1) * H - 0.5
        return np.asarray(bilinear_sample(change, u, v)).reshape(2, -1).mean(1)

    on_cap, off_cap = change_at(sticks), change_at(-sticks)
    assert (on_cap > 100).all(), (style, on_cap)
    assert (off_cap < 0.2 * on_cap).all(), (style, on_cap, off_cap)


def test_parse_shapes_ranges_and_batches_of_any_size(tiny_parser):
    parser = tiny_parser
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (6, H, W, 3), dtype=np.uint8)
    out = parser.parse(crops, crops[::-1], crops[0])
    assert isinstance(out, ParsedPads) and len(out) == 6
    assert out.buttons.shape == (6, 17) and out.triggers.shape == (6, 2)
    assert out.j_left.shape == out.j_right.shape == (6, 2)
    assert all(a.dtype == np.float32 for a in dataclasses.astuple(out))
    assert (out.buttons >= 0).all() and (out.buttons <= 1).all() and (np.abs(out.j_left) <= 1).all()
    # 6 frames ran as a full batch of 4 and a padded one; the same last two frames in a full batch read the same
    full = parser.parse(
        np.concatenate([crops[4:], crops[:2]]), np.concatenate([crops[::-1][4:], crops[::-1][:2]]), crops[0]
    )
    np.testing.assert_allclose(full.j_right[:2], out.j_right[4:], atol=1e-5)
    np.testing.assert_allclose(full.buttons[2:], out.buttons[:2], atol=1e-5)
    assert len(parser.parse(crops[:0], crops[:0], crops[0])) == 0


def test_parse_rejects_bad_input_by_name(tiny_parser):
    parser = tiny_parser
    good = np.zeros((2, H, W, 3), np.uint8)
    with pytest.raises(ValueError, match="cur must be uint8"):
        parser.parse(good, good.astype(np.float32), good[0])
    with pytest.raises(ValueError, match="template must be uint8"):
        parser.parse(good, good, good)
    with pytest.raises(ValueError, match="prev must be uint8"):
        parser.parse(np.zeros((2, 64, 64, 3), np.uint8), good, good[0])


def test_rectify_inverts_composite():
    style = STYLES[TRAIN_STYLES[0]]
    overlay = render_overlay(style, None)
    frame = np.full((360, 640, 3), 0, np.uint8)
    shown, affine = composite(frame, overlay, x=101.3, y=57.8, scale=0.9, opacity=1.0)
    crop = rectify(shown, affine, style.family)
    assert crop.shape == (H, W, 3) and crop.dtype == np.uint8
    assert np.abs(crop.astype(int) - template_input(style).astype(int)).mean() < 6
    with pytest.raises(ValueError, match="2x3"):
        rectify(shown, np.eye(3), style.family)
    with pytest.raises(ValueError, match="unknown overlay family"):
        rectify(shown, affine, "sega")
    assert canonical_size(style.family)  # the family's template frame is what rectify warps into


def test_save_load_round_trip(tmp_path, tiny_parser):
    parser = tiny_parser
    parser.save(tmp_path / "p", note="test")
    loaded = OverlayParser.load(tmp_path / "p")
    assert loaded.config == TINY
    # stored as float16: exactly the rounded params come back, as float32
    rounded = jax.tree.map(lambda a: np.asarray(a, np.float16).astype(np.float32), jax.device_get(parser.params))
    jax.tree.map(np.testing.assert_array_equal, rounded, jax.device_get(loaded.params))
    crops = np.random.default_rng(1).integers(0, 256, (4, H, W, 3), dtype=np.uint8)
    a, b = parser.parse(crops, crops, crops[0]), loaded.parse(crops, crops, crops[0])
    for x, y in zip(dataclasses.astuple(a), dataclasses.astuple(b), strict=True):
        np.testing.assert_allclose(x, y, atol=2e-2)
    with pytest.raises(FileNotFoundError, match="not an OverlayParser.save directory"):
        OverlayParser.load(tmp_path / "missing")


def test_shipped_weights_read_fresh_heldout_renders(heldout_clips):
    parser = OverlayParser.load()
    assert parser.config.input_hw == PARSER_INPUT_HW
    read, truth = read_per_style(parser, TRAIN_STYLES[::3], heldout_clips, 16, seed=777)
    m = reading_metrics(read, truth)
    assert m["button_accuracy"] >= 0.9 and m["stick_r2"] >= 0.75 and m["trigger_mae"] <= 0.1, m
    read, truth = read_per_style(parser, HELDOUT_STYLES, heldout_clips, 16, seed=888)
    m = reading_metrics(read, truth)
    assert m["button_accuracy"] >= 0.75 and m["stick_r2"] >= 0.7, m


def test_shipped_weights_read_an_opaque_neutral_overlay_as_neutral(heldout_clips):
    """Full opacity is the overlay tools' default and the main job's recordings. Weights trained on uniform
    opacities read stick clicks into neutral frames there (the first cap read-out on 14 of these 24
    `xbox_filled_dark` frames); the shipped ones, trained with a quarter drawn fully opaque, must not."""
    parser, rng = OverlayParser.load(), np.random.default_rng(21)
    frames = [clip[i] for clip in heldout_clips for i in range(0, 24, 3)]
    neutral, opaque = PadState.neutral(), Degradation(opacity=(1.0, 1.0))
    reads = []
    for name in TRAIN_STYLES:
        ex = [render_example(STYLES[name], neutral, neutral, (f, f), rng, opaque) for f in frames]
        prev, cur = (np.stack([e[k] for e in ex]) for k in ("prev", "cur"))
        read = parser.parse(prev, cur, template_input(STYLES[name]))
        reads.append(read.buttons > 0.5)
    pressed = np.stack(reads)  # [styles, frames, buttons]
    assert pressed.mean() < 0.01, pressed.sum()
    assert pressed[..., list(THUMB_INDICES)].mean() < 0.04, pressed[..., list(THUMB_INDICES)].sum((1, 2))


@pytest.mark.slow
def test_short_training_beats_the_floor(heldout_clips):
    """One style, about a minute on 2 cores: long enough to learn where its buttons and caps are."""
    style = TRAIN_STYLES[0]
    args = TrainParserArgs(
        steps=120,
        batch_size=16,
        videos=0,
        background_frames=24,
        learning_rate=3e-3,
        warmup_steps=10,
        dims=TINY.dims,
        depths=TINY.depths,
        styles=(style,),
        random_style_share=0.0,
    )
    parser, _ = train_parser(args)
    read, truth = read_per_style(parser, [style], heldout_clips, 64, seed=999)
    m = reading_metrics(read, truth)
    assert m["button_accuracy"] >= 0.85 and m["stick_r2"] >= 0.6, m


def test_training_continues_from_saved_weights(tmp_path):
    """--init starts from a saved parser (its own dims, not the arguments'), so the shipped weights can be trained
    further or fine-tuned on a user's style."""
    start = OverlayParser.init(TINY, seed=5)
    start.save(tmp_path / "start")
    start = OverlayParser.load(tmp_path / "start")  # as stored (float16 on disk)
    args = TrainParserArgs(
        steps=2,
        batch_size=2,
        videos=0,
        background_frames=4,
        learning_rate=1e-7,
        warmup_steps=1,
        threads=1,
        styles=(TRAIN_STYLES[0],),
        init=tmp_path / "start",
    )
    assert args.dims != TINY.dims
    parser, _ = train_parser(args)
    assert parser.config == start.config
    drift = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), parser.params, start.params)
    assert max(jax.tree.leaves(drift)) < 1e-4
    with pytest.raises(FileNotFoundError, match="not an OverlayParser.save directory"):
        train_parser(dataclasses.replace(args, init=tmp_path / "missing"))


def test_weights_trained_further_keep_every_command_that_made_them(tmp_path):
    """`init_recipe` carries the base weights' command (and theirs, nested) into weights trained from them."""
    parser = OverlayParser.init(TINY, seed=5)
    parser.save(tmp_path / "base", command="train-parser --out base", train_minutes=39.4, heldout_metrics={})
    first = init_recipe(tmp_path / "base")
    assert first == {"command": "train-parser --out base", "train_minutes": 39.4}
    parser.save(tmp_path / "tuned", command="train-parser --init base", train_minutes=14.0, init_recipe=first)
    assert init_recipe(tmp_path / "tuned") == {
        "command": "train-parser --init base",
        "train_minutes": 14.0,
        "init_recipe": first,
    }
