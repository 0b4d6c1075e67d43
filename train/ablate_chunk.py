"""Chunk-length ablation: train one policy per action horizon (default 4, 8, 16, 32) on the same data and budget,
then compare validation velocity loss and the smoothness of sampled actions in a table and a plot.

    python -m nitrogen_jax.train.ablate_chunk --output runs/ablate_chunk --steps 300          # Atari sample data
    python -m nitrogen_jax.train.ablate_chunk --dataset shards/ --val-dataset val/ --preset seed --output runs/ac

Same budget: every horizon trains the same steps x batch on the same shuffled records (same seed); only the chunk
length differs. Validation loss averages over the chunk, so a longer horizon also predicts further ahead: read the
loss together with the smoothness, not as a ranking on its own. Smoothness is measured on chunks sampled by the EMA
policy from validation frames (fixed noise): mean |stick(t+1) - stick(t)| and the rate of button flips between
consecutive steps, beside the same measures of the ground-truth chunks. Task success: each policy plays the
evaluation harness's tasks (`--tasks`, default the two games of the Atari sample) `--rollouts` times, frame-stepped,
executing whole chunks. Shards must hold at least the longest horizon (preprocess with --horizon 32).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HORIZONS = (4, 8, 16, 32)


def smoothness(chunks: np.ndarray, valid: np.ndarray, layout) -> tuple[float, float]:
    """(mean |Δ stick| per step, button flip rate per step) of chunks [N, H, A] in model units, over consecutive
    steps that are both valid (valid: bool [N, H]; steps past the end of a video are padding)."""
    deltas, flips = [], []
    for chunk, ok in zip(chunks, valid):
        pad = layout.decode(chunk)
        pair = ok[1:] & ok[:-1]
        if not pair.any():
            continue
        sticks = np.concatenate([pad.j_left, pad.j_right], axis=1)
        deltas.append(np.abs(np.diff(sticks, axis=0))[pair].mean())
        flips.append((np.diff(pad.buttons.astype(np.int8), axis=0) != 0)[pair].mean())
    return float(np.mean(deltas)), float(np.mean(flips))


def run(args) -> list[dict]:
    import jax

    from nitrogen_jax.config import get_config
    from nitrogen_jax.policy import Policy
    from nitrogen_jax.train.config import TrainConfig
    from nitrogen_jax.train.data import take_batches, tfrecord_batches
    from nitrogen_jax.train.loop import train

    out = Path(args.output)
    horizons = tuple(int(h) for h in args.horizons.split(","))
    if args.dataset:
        train_shards, val_shards = Path(args.dataset), Path(args.val_dataset or args.dataset)
    else:
        from nitrogen_jax.data.sample_data import make_sample_shards

        train_shards = make_sample_shards(out / "data_train", action_horizon=max(horizons), seed=0)
        val_shards = make_sample_shards(out / "data_val", action_horizon=max(horizons), seed=7)
    cfg = TrainConfig(num_steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                      warmup_steps=max(1, args.steps // 10), save_every=args.steps, seed=args.seed,
                      mesh_shape=(-1, 1, 1))
    rows = []
    for h in horizons:
        model_config = get_config(args.preset, action_horizon=h)
        val = take_batches(tfrecord_batches(val_shards, augment=False, shuffle=False), args.val_batches,
                           batch_size=args.batch_size, seed=0, action_horizon=h, shard_index=0, shard_count=1)
        summary = train(model_config, cfg, tfrecord_batches(train_shards), out / f"h{h}", eval_batches=val,
                        progress=not args.no_progress)
        policy = Policy.load(summary.policy_dir)
        frames = np.concatenate([b["frames"] for b in val])
        truth = np.concatenate([b["actions"] for b in val])
        valid = np.concatenate([b["action_mask"] for b in val]).min(axis=2) > 0
        sampled = np.asarray(policy.sample(frames, rng=jax.random.key(args.seed)))
        stick, flip = smoothness(sampled, valid, model_config.layout)
        true_stick, true_flip = smoothness(truth, valid, model_config.layout)
        rows.append({"horizon": h, "val_loss": summary.last_metrics["val_loss"], "train_loss": summary.last_metrics["loss"],
                     "stick_delta": stick, "button_flip_rate": flip, "data_stick_delta": true_stick,
                     "data_button_flip_rate": true_flip, **task_success(policy, args)})
    return rows


def task_success(policy, args) -> dict:
    """Success rate over the evaluation harness's tasks (all rollouts pooled), with its Wilson interval."""
    if not args.rollouts:
        return {}
    from nitrogen_jax.sim_bridge.agent import PolicyAgent
    from nitrogen_jax.sim_bridge.evaluate import evaluate, wilson
    from nitrogen_jax.sim_bridge.tasks import select_tasks

    results = evaluate(select_tasks(args.tasks), [PolicyAgent(policy, seed=args.seed)], args.rollouts,
                       progress=not args.no_progress)
    rate = wilson(sum(r.success for r in results), len(results))
    return {"task_success": rate.rate, "task_success_low": rate.low, "task_success_high": rate.high}


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |"
              for r in rows]
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
        err = np.array([[r["task_success"] - r["task_success_low"], r["task_success_high"] - r["task_success"]] for r in rows]).T
        c.errorbar(h, rate, yerr=err, fmt="o-", capsize=3)
        c.set(xlabel="chunk length (action horizon)", ylabel="task success (95% Wilson)", ylim=(-0.02, 1.02))
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(h, [str(x) for x in h])
        ax.minorticks_off()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True)
    p.add_argument("--dataset", help="training shards (default: build the Atari sample)")
    p.add_argument("--val-dataset", help="validation shards (default: --dataset, or a second Atari sample)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--horizons", default=",".join(map(str, HORIZONS)))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-batches", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", default="breakout_break_brick,mspacman_eat_30",
                   help="evaluation tasks (names, a category or 'all'; see nitrogen_jax.sim_bridge.tasks)")
    p.add_argument("--rollouts", type=int, default=3, help="rollouts per task and horizon (0: no task success)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    rows = run(args)
    out = Path(args.output)
    (out / "ablate_chunk.json").write_text(json.dumps(rows, indent=2))
    (out / "ablate_chunk.md").write_text(table(rows) + "\n")
    plot(rows, out / "ablate_chunk.png")
    print(table(rows))
    print(f"wrote {out / 'ablate_chunk.md'}, {out / 'ablate_chunk.json'}, {out / 'ablate_chunk.png'}")


if __name__ == "__main__":
    main()
