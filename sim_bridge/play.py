"""The play loop: observe, predict a chunk, execute it (all of it or its first k actions) frame by frame.

The game stands still while the agent predicts (the environment only advances on `step`), as in the release's
client, which pauses the game clock during inference. Episodes that end are reset and play goes on until the
frame budget is spent.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from nitrogen_jax.sim_bridge.env import GamepadEnv
from nitrogen_jax.sim_bridge.recorder import SessionRecorder


@dataclasses.dataclass
class PlayResult:
    frames: int
    episodes: int  # episodes begun (1 + the number of resets after a game over)
    total_reward: float
    predictions: int
    seconds: float
    agent_seconds: float  # of which spent predicting

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")


def actions_per_chunk(execute: int | None, horizon: int) -> int:
    """How many actions of each chunk to execute: `execute`, or the whole chunk when None."""
    if execute is not None and not 1 <= execute <= horizon:
        raise ValueError(f"execute must be in [1, {horizon}] (the chunk length), got {execute}")
    return execute or horizon


@dataclasses.dataclass(frozen=True)
class ExecutedAction:
    """One frame of the chunk-execution loop: the action taken (`chunk[index]`) and what the game answered."""

    chunk: Any
    index: int
    obs: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    info: dict


def execute_chunks(
    env: GamepadEnv,
    agent,
    obs: np.ndarray,
    execute: int | None = None,
    before_step: Callable[[Any, int], None] | None = None,
) -> Iterator[ExecutedAction]:
    """The loop every runner of a policy shares: predict a chunk from `obs`, execute its first `execute` actions
    (all if None) one frame each, predict again. An ended episode closes its chunk; a caller that keeps iterating
    after it gets a reset game. `before_step(chunk, i)` sees each action before the game steps on it."""
    k = actions_per_chunk(execute, agent.horizon)
    while True:
        chunk = agent.act(obs[None])[0]
        for i in range(k):
            if before_step is not None:
                before_step(chunk, i)
            obs, reward, terminated, truncated, info = env.step(chunk[i])
            yield ExecutedAction(chunk, i, obs, float(reward), bool(terminated), bool(truncated), info)
            if terminated or truncated:
                obs, _ = env.reset()
                break


def play(
    env: GamepadEnv,
    agent,
    num_frames: int,
    execute: int | None = None,
    recorder: SessionRecorder | None = None,
    seed: int | None = 0,
    progress: bool = True,
) -> PlayResult:
    """Run `agent` on `env` for `num_frames` frames, executing the first `execute` actions of each chunk (all if None)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    obs, _ = env.reset(seed=seed)
    result = PlayResult(0, 1, 0.0, 0, 0.0, 0.0)
    timed_agent = _TimedAgent(agent, result)
    record = None if recorder is None else (lambda chunk, i: recorder.add(env.render(), chunk, i))
    start = time.perf_counter()
    with tqdm(total=num_frames, desc=f"play {env.spec_name}", unit="frame", disable=not progress) as bar:
        for step in execute_chunks(env, timed_agent, obs, execute, record):
            result.frames += 1
            result.total_reward += step.reward
            bar.update(1)
            if result.frames >= num_frames:
                break
            if step.terminated or step.truncated:
                result.episodes += 1
    result.seconds = time.perf_counter() - start
    return result


class _TimedAgent:
    """Counts an agent's predictions and the time spent in them into a PlayResult."""

    def __init__(self, agent, result: PlayResult):
        self.agent, self.result, self.horizon = agent, result, agent.horizon

    def act(self, obs):
        t0 = time.perf_counter()
        chunk = self.agent.act(obs)
        self.result.agent_seconds += time.perf_counter() - t0
        self.result.predictions += 1
        return chunk
