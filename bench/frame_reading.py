"""Does a trained policy read the frame? The measurement behind the e2e job's open goal (not in CI).

    python bench/frame_reading.py                     # both parts, defaults below; tables on stdout and in --out
    python bench/frame_reading.py --steps 20000       # a longer budget (an accelerator makes this cheap)

Part 1, how much frame reading the task needs: the scripted Breakout player (it reads the RAM) plays
`breakout_break_3` through the evaluation harness, deciding by the RAM on a share q of its chunks and pressing a
random input on the rest. q = 0 is random input; the table says what decision accuracy beats random.

Part 2, what training gives: scripted-player Breakout recordings (truth labels; this measures learning, not
extraction) -> shards at each configuration's image size -> the project's train loop for `--steps` -> the exported
EMA policy samples a chunk for every 6th frame of a held-out recording, and its first action is compared with the
player's: accuracy, balanced accuracy over none / left / right (1/3 is chance), and the label prior. Also the
training rate, where the configurations differ in how many zero tokens pad the image up to `context_len`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np

from nitrogen_jax.actions import SEED_LAYOUT, Gamepad
from nitrogen_jax.config import NitroGenConfig
from nitrogen_jax.data.pipeline import run_preprocess
from nitrogen_jax.e2e.players import BreakoutPlayer, RandomPlayer, pad_of
from nitrogen_jax.e2e.record import RecordSettings, record
from nitrogen_jax.e2e.settings import E2ESettings, e2e_model

CLASSES = ("none", "left", "right", "fire")
RANDOM_CHOICES = RandomPlayer("ale:Breakout").choices  # the Atari inputs a random player mashes


def first_action_class(actions: np.ndarray) -> np.ndarray:
    """float [N, H, A] seed-layout chunks -> the first action's class index in CLASSES (FIRE wins, then left)."""
    a, slot = np.asarray(actions)[:, 0], SEED_LAYOUT.button_slots
    pressed = {b: a[:, slot[b]] > SEED_LAYOUT.button_threshold for b in ("south", "dpad_left", "dpad_right")}
    return np.where(pressed["south"], 3, np.where(pressed["dpad_left"], 1, np.where(pressed["dpad_right"], 2, 0)))


class PartlyRandomPlayer:
    """An evaluation agent: the RAM player's decision on a share q of its chunks, a random input on the rest."""

    def __init__(self, env, q: float, horizon: int, seed: int):
        self.env, self.q, self.horizon = env, q, horizon
        self.player, self.rng, self.frame = BreakoutPlayer(), np.random.default_rng(seed), 0
        self.name = f"player q={q:g}"

    def act(self, frames: np.ndarray) -> list[Gamepad]:
        from nitrogen_jax.sim_bridge.agent import ConstantAgent

        self.frame += self.horizon
        if self.rng.random() < self.q:
            pad = self.player.act(self.env.ram(), self.frame)
        else:
            pad = pad_of(*RANDOM_CHOICES[self.rng.integers(len(RANDOM_CHOICES))])
        return ConstantAgent(pad, self.horizon).act(frames)  # the decision held for the whole chunk


def needed_accuracy(qs: list[float], rollouts: int, execute: int) -> list[dict]:
    from nitrogen_jax.sim_bridge.evaluate import rollout, wilson
    from nitrogen_jax.sim_bridge.games import make_env
    from nitrogen_jax.sim_bridge.tasks import TASKS_BY_NAME

    task = TASKS_BY_NAME["breakout_break_3"]
    rows = []
    with make_env(task.env) as env:
        for q in qs:
            wins = sum(
                rollout(env, task, PartlyRandomPlayer(env, q, execute, seed=i), i).success for i in range(rollouts)
            )
            rate = wilson(wins, rollouts)
            rows.append({"q": q, "successes": wins, "rollouts": rollouts, "low": rate.low, "high": rate.high})
    return rows


def configurations() -> dict[str, NitroGenConfig]:
    """The e2e model as shipped (128 px / 16, 64 tokens), the release's 256 px frames (256 tokens), and 64 px / 8.

    The tables in docs/e2e.md were measured before the e2e model had global_context and the auxiliary chunk loss;
    run again, these configurations carry both."""
    base = e2e_model()

    def at(image: int, patch: int) -> NitroGenConfig:
        vision = dataclasses.replace(base.vision, image_size=image, patch_size=patch)
        return base.replace(vision=vision, context_len=vision.num_patches)

    return {
        "256 px / 16, 256 tokens": at(256, 16),
        "e2e model (128 px / 16, context 64)": base,
        "64 px / 8, context 64": at(64, 8),
    }


def shards_at(root: Path, image_size: int, videos: list[str]) -> tuple[Path, Path]:
    """(train shards, held-out shards) of the recordings at `image_size`; the last video is held out."""
    out = root / f"shards_{image_size}"
    if not (out / "manifest.json").exists():
        cfg = dataclasses.replace(E2ESettings().preprocess, image_size=image_size)
        run_preprocess([root / "truth"], root / "videos", out, cfg)
    split = {"train": out / "train", "heldout": out / "heldout"}
    for name, folder in split.items():
        folder.mkdir(exist_ok=True)
        shutil.copy(out / "manifest.json", folder / "manifest.json")  # the loader reads the frame size from it
        chosen = videos[-1:] if name == "heldout" else videos[:-1]
        for f in out.glob("*.tfrecord*"):
            if any(f.name.startswith(v + "-") for v in chosen) and not (folder / f.name).exists():
                shutil.copy(f, folder / f.name)
    return split["train"], split["heldout"]


def heldout_arrays(shards: Path, horizon: int, every: int) -> tuple[np.ndarray, np.ndarray]:
    from nitrogen_jax.train.data import tfrecord_batches

    it = tfrecord_batches(shards, augment=False, shuffle=False, num_epochs=1)(
        batch_size=60, seed=0, action_horizon=horizon, shard_index=0, shard_count=1
    )
    frames, actions = [], []
    for b in it:
        frames.append(np.asarray(b["frames"])[::every])
        actions.append(np.asarray(b["actions"])[::every])
    return np.concatenate(frames), np.concatenate(actions)


def reads(policy_dir: Path, frames: np.ndarray, labels: np.ndarray) -> dict:
    import jax

    from nitrogen_jax.policy import Policy

    policy = Policy.load(policy_dir)
    preds = [
        np.asarray(policy.sample(frames[i : i + 100], rng=jax.random.PRNGKey(i))) for i in range(0, len(frames), 100)
    ]
    got = first_action_class(np.concatenate(preds))
    per_class = [float((got[labels == k] == k).mean()) for k in range(3) if (labels == k).any()]
    return {"accuracy": float((got == labels).mean()), "balanced": float(np.mean(per_class)), "per_class": per_class}


def train_and_read(name, model: NitroGenConfig, root: Path, videos: list[str], steps: int, batch: int) -> dict:
    from nitrogen_jax.train.data import tfrecord_batches
    from nitrogen_jax.train.loop import train

    train_dir, heldout_dir = shards_at(root, model.vision.image_size, videos)
    work = root / "runs" / f"image{model.vision.image_size}_patch{model.vision.patch_size}"
    shutil.rmtree(work, ignore_errors=True)
    cfg = E2ESettings().train.replace(num_steps=steps, batch_size=batch, save_every=steps)
    t0 = time.perf_counter()
    summary = train(model, cfg, tfrecord_batches(train_dir, augment=False), work)
    seconds = time.perf_counter() - t0
    frames, actions = heldout_arrays(heldout_dir, model.action_horizon, every=6)
    labels = first_action_class(actions)
    assert summary.policy_dir is not None
    return {
        "config": name,
        "steps": steps,
        "seconds": seconds,
        "loss": summary.last_metrics.get("loss"),
        "prior": [float((labels == k).mean()) for k in range(4)],
        **reads(summary.policy_dir, frames, labels),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/bench_frame_reading"))
    p.add_argument("--steps", type=int, default=3000, help="optimiser steps per configuration")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--videos", type=int, default=9, help="Breakout recordings of 40 s; the last is held out")
    p.add_argument("--rollouts", type=int, default=20, help="part 1 rollouts per q")
    p.add_argument("--configs", default="all", help="comma-separated substrings of configuration names")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)

    need = needed_accuracy([0.0, 0.15, 0.3, 0.5, 1.0], a.rollouts, E2ESettings().eval.execute)
    print("\n| share of decisions by the RAM player (else random) | breakout_break_3 success |\n|---:|---|")
    for r in need:
        print(
            f"| {r['q']:.2f} | {r['successes'] / r['rollouts']:.0%} [{r['low']:.0%}, {r['high']:.0%}] ({r['successes']}/{r['rollouts']}) |"
        )

    if not (a.out / "recording.json").exists():
        record(a.out, RecordSettings(videos_per_game=a.videos))
    videos = [d["video_id"] for d in json.loads((a.out / "recording.json").read_text())]
    wanted = [s.strip() for s in a.configs.split(",")]
    rows = [
        train_and_read(name, model, a.out, videos, a.steps, a.batch_size)
        for name, model in configurations().items()
        if a.configs == "all" or any(w in name for w in wanted)
    ]
    print(f"\ntrained on {len(videos) - 1} recordings x 40 s, held out {videos[-1]}; batch {a.batch_size}\n")
    print(
        "| configuration | steps | train s (with compiling) | steps/s | first action right | balanced (chance 1/3) | none / left / right |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        pc = " / ".join(f"{x:.0%}" for x in r["per_class"])
        print(
            f"| {r['config']} | {r['steps']} | {r['seconds']:.0f} | {r['steps'] / r['seconds']:.1f} | "
            f"{r['accuracy']:.0%} | {r['balanced']:.2f} | {pc} |"
        )
    prior = rows[0]["prior"] if rows else []
    print("\nlabel prior (none / left / right / fire): " + " / ".join(f"{x:.0%}" for x in prior))
    (a.out / "frame_reading.json").write_text(json.dumps({"needed": need, "trained": rows}, indent=1))


if __name__ == "__main__":
    main()
