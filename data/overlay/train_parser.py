"""Train the overlay parser on rendered examples (`parser_data`) and measure it on what it never saw.

The project's training layer supplies the optimiser (`train.optimizer.make_optimizer`: AdamW, warm-up + cosine,
global-norm clipping), the `TrainState` and its EMA rule; this file only adds the parser's loss and a small
single-device loop, since the parser is tiny and trains on CPU in minutes.

Measured at the end, on fixed example sets drawn with their own seed: TRAIN_STYLES over HELDOUT_GAMES backgrounds
("held-out renders") and HELDOUT_STYLES over HELDOUT_GAMES ("held-out styles", the network given only their
template).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from nitrogen_jax.data.overlay.parser import (
    CONFIG_FILE,
    STICK_GRID,
    WEIGHTS_DIR,
    OverlayParser,
    OverlayParserNet,
    ParserConfig,
    decode_outputs,
    init_parser_params,
)
from nitrogen_jax.data.overlay.parser_data import (
    Degradation,
    Mixture,
    RenderedPairs,
    VideoCrops,
    batches,
    fixed_set,
    gameplay_clips,
)
from nitrogen_jax.data.overlay.styles import HELDOUT_STYLES, TRAIN_STYLES
from nitrogen_jax.data.overlay.synth import HELDOUT_GAMES, TRAIN_GAMES, make_overlay_video
from nitrogen_jax.train.config import TrainConfig
from nitrogen_jax.train.optimizer import make_optimizer
from nitrogen_jax.train.state import TrainState
from nitrogen_jax.train.step import ema_decay_at

EVAL_SEED = 10_000  # evaluation sets are drawn from their own seed, never from the training stream
INPUT_KEYS = ("prev", "cur", "template")
STICK_EXPECTATION_WEIGHT = 10.0  # MSE on the expected position, beside the grid cross-entropy
CHANGE_WEIGHT = 5.0  # the dense "differs from neutral" map: the signal that gets the encoder going


@dataclasses.dataclass(frozen=True)
class TrainParserArgs:
    out: Path = WEIGHTS_DIR
    """Where the trained parser is saved (OverlayParser.save directory)."""
    steps: int = 6000
    """Optimiser updates."""
    batch_size: int = 32
    """Examples per update."""
    learning_rate: float = 2e-3
    """Peak AdamW learning rate (linear warm-up, then cosine to a tenth)."""
    warmup_steps: int = 100
    """Linear warm-up updates."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    seed: int = 0
    """Seeds the initialisation, the examples and the backgrounds."""
    styles: tuple[str, ...] = TRAIN_STYLES
    """Styles to train on (never HELDOUT_STYLES for the shipped weights)."""
    background_frames: int = 160
    """Gameplay frames recorded per game for backgrounds (a scripted player at 15 fps)."""
    videos: int = 12
    """Real compressed overlay videos (make_overlay_video, TRAIN_STYLES x TRAIN_GAMES) to mix in; 0 for none."""
    video_share: float = 0.15
    """Share of training examples cut from those videos."""
    random_style_share: float = 0.5
    """Share of rendered examples drawn in a random look (`styles.random_style`) instead of one of `styles`."""
    exact_rectification_share: float = 0.0
    """Share of rendered examples rectified with no error (the others get a small random one)."""
    full_opacity_share: float = 0.25
    """Share of rendered examples drawn fully opaque (the others at a uniform opacity in 0.5-1)."""
    sprite_share: float = 0.3
    """Share of gameplay backgrounds given cap-sized sprites (`parser_data.game_sprites`)."""
    sprite_motion: int = 0
    """Pixels per axis the sprites may move between the previous and the current frame."""
    sprite_line_share: float = 0.0
    """Share of those sprites drawn as long thin lines (`parser_data.game_line`), solid or dashed."""
    cap_click: bool = True
    """Read stick clicks at the cap (`ParserConfig.cap_click`) rather than from the stick's whole box."""
    eval_examples: int = 512
    """Examples in each held-out evaluation set."""
    threads: int = 2
    """Threads rendering examples ahead of the training step."""
    dims: tuple[int, ...] = ParserConfig.dims
    """Channels of the encoder's stages."""
    depths: tuple[int, ...] = ParserConfig.depths
    """Transformer blocks per encoder stage."""
    init: Path | None = None
    """Start from these weights (an OverlayParser.save folder, e.g. data/overlay/weights) instead of random ones,
    to train the shipped parser further (more steps, other styles, a lower rate); its dims and depths are used."""

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_examples", "threads", "background_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainParserArgs.{name} must be >= 1, got {getattr(self, name)}")
        if self.sprite_motion < 0:
            raise ValueError(f"TrainParserArgs.sprite_motion must be >= 0 pixels, got {self.sprite_motion}")
        for name in (
            "video_share",
            "random_style_share",
            "exact_rectification_share",
            "full_opacity_share",
            "sprite_share",
            "sprite_line_share",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"TrainParserArgs.{name} must be in [0, 1], got {getattr(self, name)}")


def stick_grid_target(xy: jax.Array, g: int = STICK_GRID) -> jax.Array:
    """[..., 2] (x, y) in [-1, 1] -> [..., g, g] bilinear weights on the grid cells (rows y): a target whose
    expectation is exactly xy."""
    pos = (jnp.clip(xy, -1, 1) + 1) / 2 * (g - 1)
    w = jnp.maximum(0.0, 1.0 - jnp.abs(pos[..., None] - jnp.arange(g)))  # [..., 2, g]
    return w[..., 1, :, None] * w[..., 0, None, :]


def parser_loss(params, net: OverlayParserNet, batch: dict) -> tuple[jax.Array, dict]:
    out = cast(dict, net.apply({"params": params}, *(batch[k] for k in INPUT_KEYS), family=batch["family"]))
    button = optax.sigmoid_binary_cross_entropy(out["buttons"], batch["buttons"]).mean()
    trigger = optax.sigmoid_binary_cross_entropy(out["triggers"], batch["triggers"]).mean()
    sticks = jnp.stack([batch["j_left"], batch["j_right"]], 1)  # [B, 2, 2]
    logits = out["sticks"].reshape(*out["sticks"].shape[:2], -1)
    grid = optax.softmax_cross_entropy(logits, stick_grid_target(sticks).reshape(logits.shape)).mean()
    read = decode_outputs(out)
    expectation = jnp.mean((jnp.stack([read["j_left"], read["j_right"]], 1) - sticks) ** 2)
    changed = optax.sigmoid_binary_cross_entropy(out["changed"], batch["changed"]).mean()
    family = optax.softmax_cross_entropy_with_integer_labels(out["family"], batch["family"]).mean()
    loss = button + trigger + grid + STICK_EXPECTATION_WEIGHT * expectation + CHANGE_WEIGHT * changed + family
    return loss, {
        "loss": loss,
        "button_bce": button,
        "stick_ce": grid,
        "stick_mse": expectation,
        "change": changed,
        "family_ce": family,
    }


def make_parser_train_step(net: OverlayParserNet, tx: optax.GradientTransformation, ema_decay: float):
    """jitted (state, batch) -> (state, metrics); the state is donated."""
    grad_fn = jax.value_and_grad(parser_loss, has_aux=True)

    def step(state: TrainState, batch: dict):
        (_, metrics), grads = grad_fn(state.params, net, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        d = ema_decay_at(state.step, ema_decay)
        ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state.ema_params, params)
        return TrainState(state.step + 1, params, ema, opt_state, state.rng), metrics

    return jax.jit(step, donate_argnums=(0,))


def read_examples(parser: OverlayParser, examples: dict, batch_size: int = 64) -> dict[str, np.ndarray]:
    """The parser's readings of stacked examples that may mix styles (one template per example)."""
    apply = jax.jit(lambda p, a, b, t: decode_outputs(cast(dict, parser.net.apply({"params": p}, a, b, t))))
    n = len(examples["cur"])
    parts = [
        jax.device_get(apply(parser.params, *(examples[k][i : i + batch_size] for k in INPUT_KEYS)))
        for i in range(0, n, batch_size)
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def reading_metrics(read: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
    """button_accuracy: share of (frame, button) pairs right at p > 0.5; stick_r2: 1 - SSE / SST over the four stick
    axes (each about its own mean); trigger_mae: mean |error| of the two fill levels."""
    sticks = np.concatenate([truth["j_left"], truth["j_right"]], 1)
    pred = np.concatenate([read["j_left"], read["j_right"]], 1)
    sst = ((sticks - sticks.mean(0)) ** 2).sum()
    return {
        "button_accuracy": float(((read["buttons"] > 0.5) == (truth["buttons"] > 0.5)).mean()),
        "stick_r2": float(1 - ((pred - sticks) ** 2).sum() / max(sst, 1e-9)),
        "trigger_mae": float(np.abs(read["triggers"] - truth["triggers"]).mean()),
    }


def evaluation_sets(n: int, background_frames: int) -> dict[str, dict[str, np.ndarray]]:
    """{"heldout_renders": TRAIN_STYLES over HELDOUT_GAMES, "heldout_styles": HELDOUT_STYLES over HELDOUT_GAMES}."""
    clips = gameplay_clips(HELDOUT_GAMES, background_frames, EVAL_SEED)
    return {
        "heldout_renders": fixed_set(RenderedPairs(TRAIN_STYLES, clips, EVAL_SEED), n),
        "heldout_styles": fixed_set(RenderedPairs(HELDOUT_STYLES, clips, EVAL_SEED + 1), n),
    }


def training_videos(count: int, folder: Path, seed: int) -> list:
    """`count` short real compressed overlay videos of training styles and games, at both frame rates and several
    bitrates."""
    rng = np.random.default_rng([seed, 6])
    videos = []
    for i in tqdm(range(count), desc="training videos", leave=False):
        videos.append(
            make_overlay_video(
                folder / f"train_{i}.mp4",
                game=str(rng.choice(TRAIN_GAMES)),
                style=str(rng.choice(TRAIN_STYLES)),
                seed=seed * 1000 + i,
                fps=float(rng.choice([30, 60])),
                seconds=2.0,
                bitrate_kbps=int(rng.choice([300, 500, 1000, 2000])),
            )
        )
    return videos


def train_parser(args: TrainParserArgs, eval_sets: dict | None = None) -> tuple[OverlayParser, dict]:
    """Train from scratch (or from `args.init`); returns the parser (EMA params) and {set: metrics} on the
    evaluation sets given (none measured when eval_sets is empty)."""
    start = OverlayParser.load(args.init) if args.init is not None else None
    config = (
        start.config
        if start is not None
        else ParserConfig(dims=args.dims, depths=args.depths, cap_click=args.cap_click)
    )
    net = OverlayParserNet(config)
    opt_cfg = TrainConfig(
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        num_steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        ema_decay=0.998,
    )
    params = start.params if start is not None else init_parser_params(config, jax.random.key(args.seed))
    tx = make_optimizer(opt_cfg, jax.tree.map(lambda _: True, params))
    state = TrainState(
        jnp.zeros((), jnp.int32),
        params,
        jax.tree.map(jnp.copy, params),
        tx.init(params),
        jax.random.key_data(jax.random.key(args.seed)),
    )
    step = make_parser_train_step(net, tx, opt_cfg.ema_decay)

    rendered = RenderedPairs(
        args.styles,
        gameplay_clips(TRAIN_GAMES, args.background_frames, args.seed),
        args.seed,
        deg=Degradation(
            exact_share=args.exact_rectification_share,
            full_opacity_share=args.full_opacity_share,
            sprite_share=args.sprite_share,
            sprite_motion=args.sprite_motion,
            line_share=args.sprite_line_share,
        ),
        random_style_share=args.random_style_share,
    )
    with tempfile.TemporaryDirectory(prefix="parser_videos_") as tmp:
        video_crops = VideoCrops(training_videos(args.videos, Path(tmp), args.seed), args.seed) if args.videos else None
    source = Mixture(rendered, video_crops, args.video_share, args.seed)
    it = batches(source, args.batch_size, threads=args.threads)

    bar = tqdm(range(args.steps), desc="train parser")
    for _ in bar:
        state, metrics = step(state, next(it))
        if int(state.step) % 20 == 0 or int(state.step) == args.steps:
            bar.set_postfix({k: f"{float(v):.4f}" for k, v in metrics.items()})
    parser = OverlayParser(config, state.ema_params)
    results = {name: reading_metrics(read_examples(parser, ex), ex) for name, ex in (eval_sets or {}).items()}
    return parser, results


def format_metrics(results: dict[str, dict[str, float]]) -> str:
    lines = ["| set | button accuracy | stick R^2 | trigger MAE |", "|---|---|---|---|"]
    lines += [
        f"| {name} | {m['button_accuracy']:.4f} | {m['stick_r2']:.4f} | {m['trigger_mae']:.4f} |"
        for name, m in results.items()
    ]
    return "\n".join(lines)


def init_recipe(init: Path) -> dict:
    """How the weights in `init` were made (their command, minutes, and their own `init_recipe`), kept in weights
    trained further from them, so the saved config names every command that reproduces them."""
    saved = json.loads((init / CONFIG_FILE).read_text())
    return {k: saved[k] for k in ("command", "train_minutes", "init_recipe") if k in saved}


def run(args: TrainParserArgs, argv: Sequence[str] | None = None) -> int:
    start = time.time()
    recipe = {"init_recipe": init_recipe(args.init)} if args.init is not None else {}  # before `out` may replace it
    eval_sets = evaluation_sets(args.eval_examples, args.background_frames)
    parser, results = train_parser(args, eval_sets)
    minutes = (time.time() - start) / 60
    command = shlex.join(argv if argv is not None else sys.argv)
    parser.save(
        args.out,
        train_args={k: str(v) for k, v in dataclasses.asdict(args).items()},
        command=command,
        heldout_metrics=results,
        train_minutes=round(minutes, 1),
        **recipe,
    )
    print(format_metrics(results))
    print(f"saved {args.out} after {args.steps} steps in {minutes:.1f} min")
    return 0
