"""Can the e2e policy learn to compare two positions at all? A synthetic probe behind the main job's open goal.

    python bench/relational_probe.py                   # both tasks, 3000 steps each (~4 min on 2 CPU cores)
    python bench/relational_probe.py --steps 30000     # a budget an accelerator makes cheap
    python bench/relational_probe.py --faint-ball      # the ball as small and dim as Breakout's at 128 px

Breakout asks the policy to move the paddle towards the ball: to compare the columns of two small objects. This
probe asks exactly that, with nothing else in the way: no video, no extraction, no label noise, fresh examples
every step (so no overfitting), drawn in memory at the e2e model's frame size.

- `relation`: a small red square (the ball) at a random place in the upper part, a red bar (the paddle) at a
  random column near the bottom, a band of colour where the bricks would be. The label is the ball's horizontal
  offset from the paddle's centre: left below -6 pixels, right above +6, else none; held for the whole chunk.
- `cue`: the control. The label is drawn as a white quadrant (bottom-left: left, bottom-right: right, none: no
  quadrant). Reading it needs no comparison, only noticing a quarter of the image.

Each task trains the e2e model (`e2e/settings.py: e2e_model`; `--cross-attention-only` without its global_context
and auxiliary loss, `--aux-weight W` with another action_aux_weight) with the project's loss (`compute_loss`) and
optimiser (`make_optimizer`, the e2e run's learning rate, warm-up and cosine decay), and samples the policy's
first action on 300 held-out examples as it goes. `--classifier` also trains the same vision tower under a
linear cross-entropy head on its flattened tokens: it tells the tower's failure from the flow head's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import cast

import numpy as np

from nitrogen_jax.actions import SEED_LAYOUT
from nitrogen_jax.config import NitroGenConfig
from nitrogen_jax.e2e.settings import E2ESettings, e2e_model

CLASSES = ("none", "left", "right")
RED, BRICKS = (200, 72, 72), (180, 120, 60)  # Breakout's ball/paddle colour, and a band like its brick rows
FAINT_RED = (110, 40, 40)  # the ball's colour once a 1-2 pixel speck is averaged with the black around it


def draw(
    task: str, n: int, size: int, rng: np.random.Generator, faint_ball: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 frames [n, size, size, 3], class indices [n]) of one task. faint_ball draws the ball as Breakout's
    looks at 128 px after the downscale and the video codec: 1x2 pixels of a dim red."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    labels = np.zeros(n, np.int64)
    half, ball, bar = size // 2, (1 if faint_ball else max(2, size // 40)), size // 10
    for i in range(n):
        if task == "cue":
            labels[i] = rng.integers(3)
            if labels[i]:
                x0 = 0 if labels[i] == 1 else half
                frames[i, half:, x0 : x0 + half] = 255
            continue
        bx, by = rng.integers(4, size - 4 - ball), rng.integers(size // 4, size * 3 // 4)
        px, py = rng.integers(4, size - 4 - bar), size - size // 10
        frames[i, size // 6 : size // 6 + size // 12] = BRICKS
        if faint_ball:
            frames[i, by : by + 2, bx : bx + 1] = FAINT_RED
        else:
            frames[i, by : by + ball, bx : bx + ball] = RED
        frames[i, py : py + 3, px : px + bar] = RED
        offset = (bx + ball / 2) - (px + bar / 2)
        labels[i] = 2 if offset > 6 else (1 if offset < -6 else 0)
    return frames, labels


def chunks_of(labels: np.ndarray, model: NitroGenConfig) -> np.ndarray:
    """Class indices -> seed-layout chunks holding that d-pad direction for the whole horizon."""
    actions = np.zeros((len(labels), model.action_horizon, model.action_dim), np.float32)
    slots = SEED_LAYOUT.button_slots
    actions[labels == 1, :, slots["dpad_left"]] = 1.0
    actions[labels == 2, :, slots["dpad_right"]] = 1.0
    return actions


def balanced(got: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([(got[labels == k] == k).mean() for k in range(len(CLASSES)) if (labels == k).any()]))


def first_action_class(actions: np.ndarray) -> np.ndarray:
    slots, thr = SEED_LAYOUT.button_slots, SEED_LAYOUT.button_threshold
    a = np.asarray(actions)[:, 0]
    return np.where(a[:, slots["dpad_left"]] > thr, 1, np.where(a[:, slots["dpad_right"]] > thr, 2, 0))


def probe(
    task: str,
    model: NitroGenConfig,
    steps: int,
    batch: int,
    every: int,
    head: str,
    seed: int,
    faint_ball: bool = False,
) -> list[dict]:
    """Train on fresh examples of `task`; [{step, loss, balanced}] every `every` steps on a fixed held-out set."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from nitrogen_jax.model import NitroGenModel, compute_loss, init_params, make_sampler, normalize_frames
    from nitrogen_jax.train.optimizer import make_optimizer
    from nitrogen_jax.vision import SiglipVisionTower

    size = model.vision.image_size
    rng = np.random.default_rng(seed)
    test_frames, test_labels = draw(task, 300, size, np.random.default_rng([seed, 1]), faint_ball)
    cfg = E2ESettings().train.replace(num_steps=steps, batch_size=batch)

    if head == "flow":
        net = NitroGenModel(model)
        params = init_params(model, jax.random.key(seed))

        def loss_fn(p, frames, chunks, key):
            return compute_loss(net, p, frames, chunks, jnp.ones_like(chunks), key)

        sampler = make_sampler(net, model.num_steps)
        noise = jax.random.normal(jax.random.key(seed + 1), (300, model.action_horizon, model.action_dim))

        def read(p):
            return first_action_class(np.asarray(sampler(p, test_frames, noise)))

    else:

        class Classifier(nn.Module):
            @nn.compact
            def __call__(self, frames):
                tokens = SiglipVisionTower(model.vision, jnp.float32, False, name="vision")(normalize_frames(frames))
                return nn.Dense(len(CLASSES))(tokens.reshape(tokens.shape[0], -1))

        clf = Classifier()
        params = clf.init(jax.random.key(seed), test_frames[:1])["params"]

        def loss_fn(p, frames, labels, key):
            logits = cast(jax.Array, clf.apply({"params": p}, frames))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        def read(p):
            return np.asarray(clf.apply({"params": p}, test_frames)).argmax(-1)

    tx = make_optimizer(cfg, jax.tree.map(lambda _: True, params))

    @jax.jit
    def step(p, opt_state, frames, target, key):
        loss, grads = jax.value_and_grad(loss_fn)(p, frames, target, key)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    opt_state, key, rows, losses = tx.init(params), jax.random.key(seed + 2), [], []
    for i in range(1, steps + 1):
        frames, labels = draw(task, batch, size, rng, faint_ball)
        target = chunks_of(labels, model) if head == "flow" else labels
        key, sub = jax.random.split(key)
        params, opt_state, loss = step(params, opt_state, frames, target, sub)
        losses.append(float(loss))
        if i % every == 0 or i == steps:
            rows.append(
                {"step": i, "loss": float(np.mean(losses[-every:])), "balanced": balanced(read(params), test_labels)}
            )
            print(
                f"  {task} / {head}: step {i}, loss {rows[-1]['loss']:.4f}, balanced {rows[-1]['balanced']:.2f}",
                flush=True,
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--every", type=int, default=500, help="held-out reading every this many steps")
    p.add_argument("--tasks", default="cue,relation")
    p.add_argument("--patch-size", type=int, default=None, help="override the e2e model's patch size")
    p.add_argument("--cross-attention-only", action="store_true", help="the release's DiT: no global_context path")
    p.add_argument("--aux-weight", type=float, default=None, help="override the e2e model's action_aux_weight")
    p.add_argument("--faint-ball", action="store_true", help="a 1x2-pixel dim ball, as Breakout's at 128 px")
    p.add_argument("--classifier", action="store_true", help="also train the tower under a cross-entropy head")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench_relational_probe.json"))
    a = p.parse_args()

    model = e2e_model()
    if a.cross_attention_only:
        model = model.replace(global_context=False, action_aux_weight=0.0)
    if a.aux_weight is not None:
        model = model.replace(action_aux_weight=a.aux_weight)
    if a.patch_size:
        vision = dataclasses.replace(model.vision, patch_size=a.patch_size)
        model = model.replace(vision=vision, context_len=vision.num_patches, max_seq_len=max(64, vision.num_patches))
    heads = ["flow", "classifier"] if a.classifier else ["flow"]
    results = []
    for task in a.tasks.split(","):
        for head in heads:
            t0 = time.perf_counter()
            rows = probe(task, model, a.steps, a.batch_size, a.every, head, a.seed, a.faint_ball)
            results.append({"task": task, "head": head, "seconds": time.perf_counter() - t0, "rows": rows})

    v = model.vision
    print(
        f"\ne2e model, {v.image_size} px / patch {v.patch_size}; batch {a.batch_size}; balanced accuracy on 300 held-out examples (chance 0.33)\n"
    )
    steps = [r["step"] for r in results[0]["rows"]]
    print("| task | head | s | " + " | ".join(f"step {s}" for s in steps) + " |")
    print("|---|---|---:|" + "---:|" * len(steps))
    for r in results:
        print(
            f"| {r['task']} | {r['head']} | {r['seconds']:.0f} | "
            + " | ".join(f"{x['balanced']:.2f}" for x in r["rows"])
            + " |"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
