"""Chunk-length ablation: train one policy per action horizon (default 4, 8, 16, 32) on the same data and budget,
then compare validation velocity loss and the smoothness of sampled actions in a table and a plot.

    nitrogen-jax ablate-chunk --out runs/ablate_chunk --num-steps 300          # Atari sample data
    nitrogen-jax ablate-chunk --dataset shards/ --eval-dataset val/ --preset seed --out runs/ac

Same budget: every horizon trains the same steps x batch on the same shuffled records (same seed); only the chunk
length differs. Validation loss averages over the chunk, so a longer horizon also predicts further ahead: read the
loss together with the smoothness, not as a ranking on its own. Smoothness is measured on chunks sampled by the EMA
policy from validation frames (fixed noise): mean |stick(t+1) - stick(t)| and the rate of button flips between
consecutive steps, beside the same measures of the ground-truth chunks. Task success: each policy plays the
evaluation harness's tasks (`--tasks`, default the two games of the Atari sample) `--rollouts` times, frame-stepped,
executing whole chunks. Shards must hold at least the longest horizon (preprocess with --horizon 32).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

HORIZONS = (4, 8, 16, 32)


def smoothness(chunks: np.ndarray, valid: np.ndarray, layout) -> tuple[float, float]:
    """(mean |Δ stick| per step, button flip rate per step) of chunks [N, H, A] in model units, over consecutive
    steps that are both valid (valid: bool [N, H]; steps past the end of a video are padding)."""
    deltas, flips = [], []
    for chunk, ok in zip(chunks, valid, strict=False):
        pad = layout.decode(chunk)
        pair = ok[1:] & ok[:-1]
        if not pair.any():
            continue
        sticks = np.concatenate([pad.j_left, pad.j_right], axis=1)
        deltas.append(np.abs(np.diff(sticks, axis=0))[pair].mean())
        flips.append((np.diff(pad.buttons.astype(np.int8), axis=0) != 0)[pair].mean())
    return float(np.mean(deltas)), float(np.mean(flips))


@dataclasses.dataclass(frozen=True)
class AblateChunkArgs:
    """Train one policy per action horizon on the same data and budget; compare loss, smoothness, task success."""

    out: Path
    """Output folder: one run per horizon, ablate_chunk.{md,json,png}."""
    dataset: Path | None = None
    """Training shards (default: build the Atari sample)."""
    eval_dataset: Path | None = None
    """Validation shards (default: --dataset, or a second Atari sample)."""
    preset: str = "tiny"
    """Model preset; only its action horizon changes between runs."""
    horizons: tuple[int, ...] = HORIZONS
    """Chunk lengths to compare."""
    num_steps: int = 300
    """Optimiser steps per horizon."""
    batch_size: int = 16
    learning_rate: float = 1e-3
    eval_batches: int = 4
    """Validation batches per horizon."""
    seed: int = 0
    tasks: str = "breakout_break_brick,mspacman_eat_30"
    """Evaluation tasks (names, a category or 'all'; see nitrogen_jax.sim_bridge.tasks)."""
    rollouts: int = 3
    """Rollouts per task and horizon (0: no task success)."""
    progress: bool = True

    def run(self) -> int:
        rows = ablate(self)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "ablate_chunk.json").write_text(json.dumps(rows, indent=2))
        (self.out / "ablate_chunk.md").write_text(table(rows) + "\n")
        plot(rows, self.out / "ablate_chunk.png")
        print(table(rows))
        print(
            f"wrote {self.out / 'ablate_chunk.md'}, {self.out / 'ablate_chunk.json'}, {self.out / 'ablate_chunk.png'}"
        )
        return 0


def ablate(args: AblateChunkArgs) -> list[dict]:
    import jax

    from nitrogen_jax.config import get_config
    from nitrogen_jax.policy import Policy
    from nitrogen_jax.train.config import TrainConfig
    from nitrogen_jax.train.data import take_batches, tfrecord_batches
    from nitrogen_jax.train.loop import train

    out, horizons = args.out, args.horizons
    if args.dataset:
        train_shards, val_shards = args.dataset, args.eval_dataset or args.dataset
    else:
        from nitrogen_jax.data.sample_data import make_sample_shards

        train_shards = make_sample_shards(out / "data_train", action_horizon=max(horizons), seed=0)
        val_shards = make_sample_shards(out / "data_val", action_horizon=max(horizons), seed=7)
    cfg = TrainConfig(
        num_steps=args.num_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=max(1, args.num_steps // 10),
        save_every=args.num_steps,
        seed=args.seed,
        mesh_shape=(-1, 1, 1),
    )
    rows = []
    for h in horizons:
        model_config = get_config(args.preset, action_horizon=h)
        val = take_batches(
            tfrecord_batches(val_shards, augment=False, shuffle=False),
            args.eval_batches,
            batch_size=args.batch_size,
            seed=0,
            action_horizon=h,
            shard_index=0,
            shard_count=1,
        )
        summary = train(
            model_config, cfg, tfrecord_batches(train_shards), out / f"h{h}", eval_batches=val, progress=args.progress
        )
        assert summary.policy_dir is not None  # the run exports its policy
        policy = Policy.load(summary.policy_dir)
        frames = np.concatenate([b["frames"] for b in val])
        truth = np.concatenate([b["actions"] for b in val])
        valid = np.concatenate([b["action_mask"] for b in val]).min(axis=2) > 0
        sampled = np.asarray(policy.sample(frames, rng=jax.random.key(args.seed)))
        stick, flip = smoothness(sampled, valid, model_config.layout)
        true_stick, true_flip = smoothness(truth, valid, model_config.layout)
        rows.append(
            {
                "horizon": h,
                "val_loss": summary.last_metrics["val_loss"],
                "train_loss": summary.last_metrics["loss"],
                "stick_delta": stick,
                "button_flip_rate": flip,
                "data_stick_delta": true_stick,
                "data_button_flip_rate": true_flip,
                **task_success(policy, args),
            }
        )
    return rows


def task_success(policy, args: AblateChunkArgs) -> dict:
    """Success rate over the evaluation harness's tasks (all rollouts pooled), with its Wilson interval."""
    if not args.rollouts:
        return {}
    from nitrogen_jax.sim_bridge.agent import PolicyAgent
    from nitrogen_jax.sim_bridge.evaluate import evaluate, wilson
    from nitrogen_jax.sim_bridge.tasks import select_tasks

    results = evaluate(
        select_tasks(args.tasks), [PolicyAgent(policy, seed=args.seed)], args.rollouts, progress=args.progress
    )
    rate = wilson(sum(r.success for r in results), len(results))
    return {"task_success": rate.rate, "task_success_low": rate.low, "task_success_high": rate.high}


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += [
        "| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |" for r in rows
    ]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = [r["horizon"] for r in rows]
    with_tasks = "task_success" in rows[0]
    fig, axes = plt.subplots(1, 3 if with_tasks else 2, figsize=(15 if with_tasks else 10, 3.8))
    a, b = axes[0], axes[1]
    a.plot(h, [r["val_loss"] for r in rows], "o-")
    a.set(xlabel="chunk length (action horizon)", ylabel="validation velocity loss (EMA)")
    b.plot(h, [r["stick_delta"] for r in rows], "o-", label="sampled: mean |Δ stick|")
    b.plot(h, [r["button_flip_rate"] for r in rows], "s-", label="sampled: button flip rate")
    b.plot(h, [r["data_stick_delta"] for r in rows], "o:", color="gray", label="data: mean |Δ stick|")
    b.plot(h, [r["data_button_flip_rate"] for r in rows], "s:", color="black", label="data: button flip rate")
    b.set(xlabel="chunk length (action horizon)", ylabel="per-step change (lower = smoother, log)")
    b.set_yscale("log")
    b.legend(fontsize=7)
    if with_tasks:
        c = axes[2]
        rate = np.array([r["task_success"] for r in rows])
        err = np.array(
            [[r["task_success"] - r["task_success_low"], r["task_success_high"] - r["task_success"]] for r in rows]
        ).T
        c.errorbar(h, rate, yerr=err, fmt="o-", capsize=3)
        c.set(xlabel="chunk length (action horizon)", ylabel="task success (95% Wilson)", ylim=(-0.02, 1.02))
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(h, [str(x) for x in h])
        ax.minorticks_off()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
