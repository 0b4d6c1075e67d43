"""Model subcommands: `convert` (release checkpoint / SigLIP tower -> Policy directory) and `sample`."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DEFAULT_FRAME = Path(__file__).parent / "assets" / "frame.png"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="import the release's ng.pt (or a SigLIP tower) into a Policy directory")
    p.add_argument("checkpoint", help="the release checkpoint file (a torch pickle, read without running its code), "
                                      "or a transformers SigLIP save_pretrained directory to start --preset from")
    p.add_argument("out", help="output directory (Policy.save layout: params/ + config.json)")
    p.add_argument("--vision-heads", type=int, default=None, help="override the vision tower's head count")
    p.add_argument("--context-len", type=int, default=None, help="override the tokenizer's max sequence length")
    p.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--preset", default="nitrogen-500m", help="with a SigLIP directory: the policy to initialise around it")
    p.add_argument("--seed", type=int, default=0, help="with a SigLIP directory: seed of the non-vision weights")
    p.set_defaults(func=_convert)

    p = sub.add_parser("sample", help="sample one action chunk from a frame and print it")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tiny", help="init a preset with random weights (tiny, seed, nitrogen-500m)")
    src.add_argument("--policy", help="a Policy directory (from `convert` or training)")
    p.add_argument("--image", default=str(DEFAULT_FRAME), help="an RGB image file (default: a bundled Atari frame)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="Euler steps (default: the config's)")
    p.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default=None)
    p.set_defaults(func=_sample)


def _convert(args) -> int:
    from nitrogen_jax.convert.release import load_release_checkpoint
    from nitrogen_jax.convert.siglip import init_from_siglip
    from nitrogen_jax.policy import Policy

    if Path(args.checkpoint).is_dir():
        policy = init_from_siglip(args.preset, args.checkpoint, seed=args.seed, compute_dtype=args.compute_dtype)
        print(f"{policy} with the vision tower of {args.checkpoint}\nwrote {policy.save(args.out)}")
        return 0
    config, params, report = load_release_checkpoint(
        args.checkpoint, vision_heads=args.vision_heads, context_len=args.context_len, compute_dtype=args.compute_dtype)
    out = Policy(config, params).save(args.out)
    print(report.summary())
    print(f"wrote {out}")
    return 0


def load_frame(path: str | Path, size: int) -> np.ndarray:
    """An image file -> uint8 RGB [size, size, 3], squashed to the square with INTER_AREA like the release client."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path} (missing or not an image file)")
    return cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def format_chunk(chunk: np.ndarray, layout) -> str:
    """A [H, A] chunk in model units as a table: pressed buttons and stick positions per frame."""
    pad = layout.decode(chunk)
    lines = [f"{'frame':>5}  {'left stick (x, y)':>18}  {'right stick (x, y)':>18}  buttons"]
    for i in range(len(pad)):
        lx, ly = pad.j_left[i]
        rx, ry = pad.j_right[i]
        buttons = " ".join(b.upper() for b in pad.pressed(i)) or "-"
        lines.append(f"{i:>5}  {lx:+8.3f}, {ly:+8.3f}  {rx:+8.3f}, {ry:+8.3f}  {buttons}")
    return "\n".join(lines)


def _sample(args) -> int:
    import jax

    from nitrogen_jax.policy import Policy

    overrides = {"compute_dtype": args.compute_dtype} if args.compute_dtype else {}
    if args.policy:
        policy = Policy.load(args.policy, **overrides)
    else:
        policy = Policy.init(args.preset, seed=args.seed, **overrides)
    frame = load_frame(args.image, policy.config.vision.image_size)
    print(f"{policy}\nframe: {args.image}")
    rng = jax.random.key(args.seed)
    t0 = time.perf_counter()
    chunk = np.asarray(policy.sample(frame[None], rng=rng, num_steps=args.steps))[0]
    t1 = time.perf_counter()
    np.asarray(policy.sample(frame[None], rng=rng, num_steps=args.steps))
    t2 = time.perf_counter()
    print(f"first call (compile + run) {t1 - t0:.2f} s, second call {1e3 * (t2 - t1):.1f} ms on {jax.devices()[0].platform}")
    print(format_chunk(chunk, policy.config.layout))
    return 0
