"""Rollouts of agents on tasks, and their success rates with Wilson confidence intervals.

Every task is run with the same seeds for every agent, so the policy and the random baseline face the same starts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.sim_bridge.env import GamepadEnv
from nitrogen_jax.sim_bridge.games import make_env
from nitrogen_jax.sim_bridge.play import execute_chunks
from nitrogen_jax.sim_bridge.tasks import Progress, Task

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Rollout:
    task: str
    category: str
    agent: str
    index: int
    success: bool
    frames: int  # frames played until the outcome was decided
    reward: float
    outcome: str  # "success", "time limit", "game over", "predicate failed"


def start_rollout(env: GamepadEnv, task: Task, index: int):
    """Reset to the task's start state; returns (observation, info)."""
    start = task.start
    obs, info = env.reset(seed=start.seed + index)
    for _ in range(start.noop_frames):
        obs, _, _, _, info = env.step(Gamepad.zeros(1))
    if start.state_file is not None:
        obs, info = env.load_state(Path(start.state_file).read_bytes())
    return obs, info


def rollout(env: GamepadEnv, task: Task, agent, index: int, execute: int | None = None) -> Rollout:
    """One attempt at `task`: the agent acts every `execute` frames (its whole chunk if None) until decided."""
    obs, info = start_rollout(env, task, index)
    start_info, start_ram = dict(info), env.ram().copy()
    frame, total = 0, 0.0

    def result(success: bool, outcome: str) -> Rollout:
        return Rollout(task.name, task.category, agent.name, index, success, frame, total, outcome)

    for step in execute_chunks(env, agent, obs, execute):
        frame += 1
        total += step.reward
        holds = task.success(Progress(frame, total, step.info, env.ram(), start_info, start_ram))
        if task.mode == "reach" and holds:
            return result(True, "success")
        if task.mode == "survive" and not holds:
            return result(False, "predicate failed")
        if step.terminated or step.truncated:
            return result(False, "game over")
        if frame >= task.time_limit:
            return result(task.mode == "survive", "success" if task.mode == "survive" else "time limit")
    raise AssertionError("execute_chunks never ends on its own")


def evaluate(
    tasks: list[Task], agents: list, rollouts: int, execute: int | None = None, progress: bool = True
) -> list[Rollout]:
    """`rollouts` attempts per task per agent. One environment per task (stable-retro allows one per process)."""
    if rollouts < 1:
        raise ValueError(f"rollouts must be >= 1, got {rollouts}")
    results = []
    with tqdm(total=len(tasks) * len(agents) * rollouts, desc="eval", unit="rollout", disable=not progress) as bar:
        for task in tasks:
            with make_env(task.env) as env:
                for agent in agents:
                    for i in range(rollouts):
                        bar.set_postfix_str(f"{task.name} / {agent.name}")
                        results.append(rollout(env, task, agent, i, execute))
                        bar.update(1)
    return results


@dataclasses.dataclass(frozen=True)
class Rate:
    successes: int
    trials: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.successes / self.trials

    def __str__(self) -> str:
        return f"{self.rate:.0%} [{self.low:.0%}, {self.high:.0%}] ({self.successes}/{self.trials})"


def wilson(successes: int, trials: int, confidence: float = CONFIDENCE) -> Rate:
    """Success rate with its Wilson score interval (sound at 0 and n successes, unlike the normal approximation)."""
    from scipy.stats import binomtest

    ci = binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return Rate(successes, trials, float(ci.low), float(ci.high))


def success_rates(results: list[Rollout], key: str) -> dict[tuple[str, str], Rate]:
    """(task or category, agent) -> Rate, grouping rollouts by `key` ('task' or 'category')."""
    groups: dict[tuple[str, str], list[bool]] = {}
    for r in results:
        groups.setdefault((getattr(r, key), r.agent), []).append(r.success)
    return {k: wilson(int(np.sum(v)), len(v)) for k, v in groups.items()}
