"""The evaluate stage: the trained policy beside the random and the constant-action baselines on the chosen tasks,
with the sim bridge's report (markdown, plots, rollouts.json) and a summary the report page reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nitrogen_jax.e2e.settings import EvalSettings

RESULTS_FILE = "results.json"


def evaluate_policy(policy_dir: Path, labels_dir: Path, out: Path, s: EvalSettings, seed: int = 0) -> dict:
    """Success of policy / random / constant (the recorded player's most frequent action) per task."""
    from nitrogen_jax.policy import Policy
    from nitrogen_jax.sim_bridge.agent import (
        ConstantAgent,
        PolicyAgent,
        RandomAgent,
        describe_pad,
        most_frequent_action,
    )
    from nitrogen_jax.sim_bridge.evaluate import evaluate, success_rates
    from nitrogen_jax.sim_bridge.report import write_report
    from nitrogen_jax.sim_bridge.tasks import select_tasks

    tasks = select_tasks(s.tasks)
    policy = Policy.load(policy_dir)
    horizon = policy.config.action_horizon
    pad, share = most_frequent_action(labels_dir)
    agents: list[PolicyAgent | RandomAgent | ConstantAgent] = [
        PolicyAgent(policy, s.temperature, seed=seed),
        RandomAgent(horizon, seed=seed),
        ConstantAgent(pad, horizon),
    ]
    results = evaluate(tasks, agents, s.rollouts, s.execute)
    header = {
        "policy": f"{policy} from {policy_dir}",
        "temperature": s.temperature,
        "execute": f"first {s.execute} of {horizon} actions per chunk",
        "rollouts per task and agent": s.rollouts,
        "constant baseline": f"holds {describe_pad(pad)}, the player's most frequent action ({share:.0%} of rows)",
    }
    write_report(results, tasks, out, header)
    rates = success_rates(results, "task")
    summary: dict[str, Any] = {
        "constant_action": describe_pad(pad),
        "constant_share": share,
        "tasks": {
            t.name: {a.name: {**vars(rates[(t.name, a.name)]), "rate": rates[(t.name, a.name)].rate} for a in agents}
            for t in tasks
        },
    }
    (out / RESULTS_FILE).write_text(json.dumps(summary, indent=1))
    return {t: {a: f"{v['rate']:.0%}" for a, v in r.items()} for t, r in summary["tasks"].items()}
