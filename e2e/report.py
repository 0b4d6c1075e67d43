"""The report page: one markdown file with what the run did and whether it worked.

Sections: the verdict (does the policy beat random and the constant action, with 95% Wilson intervals that say
so), the success table, the extraction's accuracy against the withheld truth, the training loss curve (PNG), a
GIF of the policy playing with its predicted chunk drawn on, and the time each stage took.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nitrogen_jax.e2e.settings import E2ESettings

REPORT_DIR, PAGE = "report", "report.md"


def loss_curve(metrics_jsonl: Path, path: Path) -> Path:
    """Training loss per step (and its running mean) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]
    if not rows:
        raise ValueError(f"{metrics_jsonl}: no 'loss' records to plot")
    steps, loss = np.array([r["step"] for r in rows]), np.array([r["loss"] for r in rows])
    k = max(1, len(loss) // 25)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, loss, alpha=0.3, lw=0.8, label="loss")
    ax.plot(steps[k - 1 :], smooth, lw=1.6, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def verdict(task: str, rates: dict[str, dict]) -> str:
    """One sentence: does the policy beat each baseline with disjoint 95% intervals?"""
    p = rates["policy"]
    parts = []
    for agent, r in rates.items():
        if agent == "policy":
            continue
        if p["low"] > r["high"]:
            parts.append(f"beats {agent} (intervals disjoint)")
        elif p["rate"] > r["rate"]:
            parts.append(f"is above {agent} but the intervals overlap")
        else:
            parts.append(f"does NOT beat {agent}")
    return f"on **{task}** the policy " + "; ".join(parts) + "."


def _rate(r: dict) -> str:
    return f"{r['rate']:.0%} [{r['low']:.0%}, {r['high']:.0%}] ({r['successes']}/{r['trials']})"


def write_report(out: Path, s: E2ESettings) -> Path:
    """out/report/report.md with loss.png and policy.gif beside it."""
    from nitrogen_jax.e2e.replay import policy_gif
    from nitrogen_jax.e2e.stage_record import STAGE_ORDER, read_stage
    from nitrogen_jax.sim_bridge.evaluate import Rate
    from nitrogen_jax.sim_bridge.report import baseline_caveats
    from nitrogen_jax.sim_bridge.tasks import select_tasks

    out = Path(out)
    page_dir = out / REPORT_DIR
    page_dir.mkdir(parents=True, exist_ok=True)
    results = json.loads((out / "eval" / "results.json").read_text())
    accuracy = json.loads((out / "extract" / "accuracy.json").read_text())
    recording = json.loads((out / "record" / "recording.json").read_text())
    loss_curve(out / "train" / "logs" / "metrics.jsonl", page_dir / "loss.png")
    tasks = select_tasks(s.eval.tasks)
    policy_gif(
        out / "train" / "policy",
        tasks[0].env,
        page_dir / "policy.gif",
        s.eval.gif_frames,
        s.eval.execute,
        s.eval.temperature,
    )

    lines = ["# nitrogen-jax end to end", ""]
    lines += [
        "Scripted players filmed with an input overlay -> actions read off the video -> shards -> a small "
        "policy -> evaluated against random input and the player's most frequent action held constant.",
        "",
    ]
    lines += ["## Verdict", ""]
    lines += [f"- {verdict(t, r)}" for t, r in results["tasks"].items()]
    by_task = {
        (t, a): Rate(v["successes"], v["trials"], v["low"], v["high"])
        for t, r in results["tasks"].items()
        for a, v in r.items()
    }
    agents = list(next(iter(results["tasks"].values())))
    lines += [f"- {c}" for c in baseline_caveats(by_task, list(results["tasks"]), agents)]
    lines += ["", "## Task success (95% Wilson intervals)", ""]
    lines += ["| task | " + " | ".join(agents) + " |", "|---|" + "---|" * len(agents)]
    lines += [f"| {t} | " + " | ".join(_rate(r[a]) for a in agents) + " |" for t, r in results["tasks"].items()]
    lines += [
        "",
        f"constant = holds {results['constant_action']} (the recorded player's most frequent action, "
        f"{results['constant_share']:.0%} of label rows); rollouts: {s.eval.rollouts} per task and agent, "
        f"execute {s.eval.execute} of {s.model.action_horizon} actions per chunk, temperature "
        f"{s.eval.temperature}. Full evaluation report: `eval/report.md`.",
        "",
    ]

    lines += ["## Extraction accuracy (against the withheld truth)", ""]
    if accuracy["method"] == "truth":
        lines += [
            "**The overlay extractor or its parser weights were not installed: the stages after extract used the "
            "withheld truth labels, so these figures are 100% by construction and say nothing about extraction.**",
            "",
        ]
    elif accuracy.get("game_area_set_from_recording"):
        lines += [
            f"Read off the video alone by `data.overlay.extract`; the game area of "
            f"{accuracy['game_area_set_from_recording']} chunk(s) was set from the recording layout (the extractor "
            "only finds black bars, and our overlay sits beside the game).",
            "",
        ]
    lines += [
        "| method | videos | frames | frames covered | button accuracy | rows exactly right | stick MAE |",
        "|---|---|---|---|---|---|---|",
    ]
    mae = accuracy["stick_mae"]
    lines += [
        f"| {accuracy['method']} | {accuracy['videos_extracted']}/{accuracy['videos']} | {accuracy['frames']} | "
        f"{accuracy['frames_covered']:.1%} | {accuracy['button_accuracy']:.2%} | {accuracy['exact_rows']:.2%} | "
        f"{'-' if mae is None else f'{mae:.3f}'} |",
        "",
    ]
    if accuracy["press_recall"]:
        lines += ["Pressed-frame recall: " + ", ".join(f"{b} {v:.1%}" for b, v in accuracy["press_recall"].items()), ""]

    lines += ["## Training", "", "![training loss](loss.png)", ""]
    train = read_stage(out, "train")
    if train:
        lines += [
            f"{train['summary']['steps']} steps of batch {s.train.batch_size}, final loss "
            f"{train['summary']['loss']:.4f}; model: {_model_line(s)}.",
            "",
        ]
    lines += [
        "## The policy playing",
        "",
        f"![policy playing {tasks[0].env}](policy.gif)",
        "",
        f"{tasks[0].env} from reset, {s.eval.gif_frames} frames; right: the chunk being executed "
        "(button timeline, executed action outlined).",
        "",
    ]

    frames = sum(r["frames"] for r in recording)
    lines += [
        "## Data",
        "",
        f"{len(recording)} recordings, {frames} frames ({frames / 60:.0f} s at 60 fps) of "
        f"{', '.join(sorted({r['game'] for r in recording}))}; overlay style {s.record.style}; the scripted "
        f"player's score over all recordings: {sum(r['reward'] for r in recording):g}.",
        "",
    ]
    lines += ["## Stages", "", "| stage | seconds (when it last ran) |", "|---|---|"]
    total = 0.0
    for name in STAGE_ORDER:
        st = read_stage(out, name)
        if st is not None:
            total += st["seconds"]
            lines.append(f"| {name} | {st['seconds']:.0f} |")
    lines += [f"| total before this page | {total:.0f} |", ""]
    path = page_dir / PAGE
    path.write_text("\n".join(lines) + "\n")
    return path


def _model_line(s: E2ESettings) -> str:
    m = s.model
    return (
        f"ViT {m.vision.width}x{m.vision.depth} on {m.vision.patch_size}-px patches, mixer {m.mixer.num_layers} "
        f"block(s), DiT {m.dit.width}x{m.dit.num_layers}, {m.action_layout} layout, {m.action_horizon} actions "
        f"at {m.action_fps:g} Hz, {m.num_steps} Euler steps"
    )
