"""The evaluation report: markdown tables per category and per task, bar plots with confidence intervals, raw JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from nitrogen_jax.sim_bridge.evaluate import CONFIDENCE, Rate, Rollout, success_rates
from nitrogen_jax.sim_bridge.tasks import CATEGORIES, Task


def _plot(rates: dict[tuple[str, str], Rate], groups: list[str], agents: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(groups) * len(agents) + 1.5))
    height = 0.8 / len(agents)
    y = np.arange(len(groups))
    for j, agent in enumerate(agents):
        r = [rates[(g, agent)] for g in groups]
        rate = np.array([x.rate for x in r])
        err = np.array([[x.rate - x.low for x in r], [x.high - x.rate for x in r]])
        ax.barh(y + j * height, rate, height, xerr=err, capsize=3, label=agent)
    ax.set_yticks(y + height * (len(agents) - 1) / 2, groups)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"success rate ({CONFIDENCE:.0%} Wilson interval)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def baseline_caveats(by_task: dict[tuple[str, str], Rate], tasks: list[str], agents: list[str], policy: str = "policy"):
    """One line per task where a baseline's success rate matches or beats the policy's, or where their intervals
    overlap: there the policy's number says nothing about playing from the frame."""
    lines = []
    for t in tasks:
        if (t, policy) not in by_task:
            continue
        p = by_task[(t, policy)]
        for a in agents:
            if a == policy or (t, a) not in by_task:
                continue
            b = by_task[(t, a)]
            if b.rate >= p.rate:
                lines.append(f"**caveat**: on {t} the {a} baseline ({b}) matches or beats the policy ({p})")
            elif b.high >= p.low:
                lines.append(
                    f"**caveat**: on {t} the policy ({p}) is above the {a} baseline ({b}) but their "
                    f"{CONFIDENCE:.0%} intervals overlap"
                )
    return lines


def write_report(results: list[Rollout], tasks: list[Task], out_dir: str | Path, header: dict) -> Path:
    """Write report.md, success_by_task.png, success_by_category.png and rollouts.json into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    agents = list(dict.fromkeys(r.agent for r in results))
    by_task, by_category = success_rates(results, "task"), success_rates(results, "category")
    categories = [c for c in CATEGORIES if any(t.category == c for t in tasks)]
    _plot(by_task, [t.name for t in tasks], agents, "Success by task", out / "success_by_task.png")
    _plot(by_category, categories, agents, "Success by category", out / "success_by_category.png")
    (out / "rollouts.json").write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))

    lines = ["# nitrogen-jax evaluation", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += [f"- success rates with {CONFIDENCE:.0%} Wilson intervals, (successes/rollouts)", ""]
    caveats = baseline_caveats(by_task, [t.name for t in tasks], agents)
    lines += [*caveats, ""] if caveats else []
    lines += ["## By category", "", "| category | " + " | ".join(agents) + " |", "|---|" + "---|" * len(agents)]
    lines += [f"| {c} | " + " | ".join(str(by_category[(c, a)]) for a in agents) + " |" for c in categories]
    lines += ["", "![success by category](success_by_category.png)", "", "## By task", ""]
    lines += [
        "| task | game | category | success when | limit | " + " | ".join(agents) + " |",
        "|---|---|---|---|---|" + "---|" * len(agents),
    ]
    for t in tasks:
        when = ("keeps " if t.mode == "survive" else "") + t.success.describe
        lines.append(
            f"| {t.name} | {t.env} | {t.category} | {when} | {t.time_limit / 60:g} s | "
            + " | ".join(str(by_task[(t.name, a)]) for a in agents)
            + " |"
        )
    lines += ["", "![success by task](success_by_task.png)", "", "## Tasks", ""]
    lines += [f"- **{t.name}** ({t.env}, {t.category}): {t.description}" for t in tasks]
    outcomes: dict[tuple[str, str], int] = {}
    for r in results:
        outcomes[(r.agent, r.outcome)] = outcomes.get((r.agent, r.outcome), 0) + 1
    lines += ["", "## Outcomes", "", "| agent | outcome | rollouts |", "|---|---|---|"]
    lines += [f"| {a} | {o} | {n} |" for (a, o), n in sorted(outcomes.items())]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
