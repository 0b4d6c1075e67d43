"""Transfer at small scale (not in CI): pretrain on several games, fine-tune on a held-out game, and compare with
training from scratch on the same held-out data and the same step budget.

    python bench/transfer.py                              # defaults below; a table and transfer.png in --out
    python bench/transfer.py --pretrain-steps 2000 --finetune-steps 1000 --rollouts 30

Pretraining data: the scripted Pong player's recordings (e2e.record) and random sticky play of Ms. Pac-Man and
Space Invaders (data.sample_data), all filmed with an overlay and preprocessed with the overlay masked out.
Held-out game: Breakout, the scripted player's recordings; validation on a recording with an unseen seed.
Reported: validation flow-matching loss of each run's EMA policy (same batches, same noise) and, with
--rollouts, success on breakout_break_brick with 95% Wilson intervals.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

from nitrogen_jax.data.pipeline import run_preprocess
from nitrogen_jax.data.sample_data import make_sample_shards
from nitrogen_jax.e2e.record import RecordSettings, record
from nitrogen_jax.e2e.settings import E2ESettings


def recorded_shards(root: Path, games: tuple[str, ...], videos: int, seconds: float, seed: int, cfg) -> Path:
    """Scripted-player recordings of `games` -> shards (truth labels: this bench measures transfer, not extraction)."""
    if (root / "shards" / "manifest.json").exists():
        return root / "shards"
    record(root, RecordSettings(games=games, videos_per_game=videos, seconds=seconds, seed=seed))
    run_preprocess([root / "truth"], root / "videos", root / "shards", cfg)
    return root / "shards"


def merged(dirs: list[Path], out: Path) -> Path:
    """One shards folder holding the shards (and their index sidecars) of several."""
    out.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(dirs):
        for f in d.glob("*.tfrecord*"):
            target = out / f"{i}_{f.name}"
            if not target.exists():
                shutil.copy(f, target)
    return out


def val_loss(policy_dir: Path, shards: Path, horizon: int, batches: int = 8) -> float:
    """Mean velocity loss of a saved policy over fixed validation batches (the train loop's eval step)."""
    import jax
    import numpy as np

    from nitrogen_jax.model import compute_loss
    from nitrogen_jax.policy import Policy
    from nitrogen_jax.train.data import take_batches, tfrecord_batches

    policy = Policy.load(policy_dir)
    data = take_batches(
        tfrecord_batches(shards, augment=False, shuffle=False),
        batches,
        batch_size=16,
        seed=0,
        action_horizon=horizon,
        shard_index=0,
        shard_count=1,
    )
    loss = jax.jit(
        lambda p, b, r: compute_loss(policy.model, p, b["frames"], b["actions"], b["action_mask"], r, train=False)
    )
    losses = [float(loss(policy.params, b, jax.random.PRNGKey(1234 + i))) for i, b in enumerate(data)]
    return float(np.mean(losses))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/bench_transfer"))
    p.add_argument("--pretrain-steps", type=int, default=600)
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--heldout-seconds", type=float, default=40.0, help="Breakout fine-tuning data, seconds")
    p.add_argument("--rollouts", type=int, default=0, help="breakout_break_brick rollouts per run (0: loss only)")
    a = p.parse_args()

    from nitrogen_jax.train.data import tfrecord_batches
    from nitrogen_jax.train.loop import train

    s = E2ESettings()
    cfg = s.preprocess
    t0 = time.perf_counter()
    pong = recorded_shards(a.out / "data_pong", ("ale:Pong",), 2, 40.0, 100, cfg)
    sample = make_sample_shards(
        a.out / "data_sample",
        games=("ms_pacman", "space_invaders"),
        num_frames=2400,
        layout=cfg.layout,
        action_horizon=cfg.action_horizon,
        action_fps=cfg.action_fps,
        density_threshold=0.0,
    )
    pretrain_data = merged([pong, sample], a.out / "data_pretrain")
    heldout = recorded_shards(a.out / "data_breakout", ("ale:Breakout",), 1, a.heldout_seconds, 0, cfg)
    val = recorded_shards(a.out / "data_breakout_val", ("ale:Breakout",), 1, 20.0, 777, cfg)
    data_s = time.perf_counter() - t0

    def run(name: str, steps: int, data: Path, pretrained: Path | None = None) -> tuple[Path, float]:
        t = time.perf_counter()
        tc = s.train.replace(num_steps=steps, batch_size=a.batch_size, save_every=steps, warmup_steps=min(100, steps))
        summary = train(s.model, tc, tfrecord_batches(data, augment=False), a.out / name, pretrained=pretrained)
        if summary.policy_dir is None:
            raise RuntimeError(f"{a.out / name}: training stopped before exporting a policy")
        return summary.policy_dir, time.perf_counter() - t

    pre, pre_s = run("pretrain", a.pretrain_steps, pretrain_data)
    ft, ft_s = run("finetune", a.finetune_steps, heldout, pretrained=pre)
    sc, sc_s = run("scratch", a.finetune_steps, heldout)
    rows = {
        "pretrained only (no Breakout)": ("pretrain", pre, pre_s),
        "pretrained + fine-tuned": ("finetune", ft, ft_s),
        "from scratch": ("scratch", sc, sc_s),
    }
    results: dict[str, dict[str, Any]] = {}
    for label, (_, policy, seconds) in rows.items():
        results[label] = {"val_loss": val_loss(policy, val, s.model.action_horizon), "seconds": seconds}
    if a.rollouts:
        from nitrogen_jax.e2e.evaluation import evaluate_policy

        for label, (name, policy, _) in rows.items():
            ev = dataclasses.replace(s.eval, rollouts=a.rollouts)
            out = a.out / "eval" / name
            evaluate_policy(policy, a.out / "data_breakout" / "truth", out, ev)
            r = json.loads((out / "results.json").read_text())["tasks"]["breakout_break_brick"]["policy"]
            results[label]["success"] = f"{r['rate']:.0%} [{r['low']:.0%}, {r['high']:.0%}]"

    print(
        f"\nbudget: pretrain {a.pretrain_steps} steps, fine-tune / scratch {a.finetune_steps} steps, batch "
        f"{a.batch_size}, model {s.model.vision.width}-wide ViT; data built in {data_s:.0f} s\n"
    )
    print("| run | Breakout val loss | train s |" + (" breakout_break_brick |" if a.rollouts else ""))
    print("|---|---:|---:|" + ("---|" if a.rollouts else ""))
    for label, r in results.items():
        extra = f" {r['success']} |" if a.rollouts else ""
        print(f"| {label} | {r['val_loss']:.4f} | {r['seconds']:.0f} |{extra}")
    (a.out / "transfer.json").write_text(json.dumps(results, indent=1))
    plot(results, a.out / "transfer.png")
    print(f"\nplot: {a.out / 'transfer.png'}")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    labels = list(results)
    ax.barh(labels, [results[k]["val_loss"] for k in labels])
    ax.invert_yaxis()
    ax.set_xlabel("Breakout validation loss (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
