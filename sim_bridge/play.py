"""The play loop: observe, predict a chunk, execute it (all of it or its first k actions) frame by frame.

The game stands still while the agent predicts (the environment only advances on `step`), as in the release's
client, which pauses the game clock during inference. Episodes that end are reset and play goes on until the
frame budget is spent.
"""
from __future__ import annotations

import dataclasses
import time

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


def play(env: GamepadEnv, agent, num_frames: int, execute: int | None = None, recorder: SessionRecorder | None = None,
         seed: int | None = 0, progress: bool = True) -> PlayResult:
    """Run `agent` on `env` for `num_frames` frames, executing the first `execute` actions of each chunk (all if None)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    k = actions_per_chunk(execute, agent.horizon)
    obs, _ = env.reset(seed=seed)
    result = PlayResult(0, 1, 0.0, 0, 0.0, 0.0)
    start = time.perf_counter()
    with tqdm(total=num_frames, desc=f"play {env.spec_name}", unit="frame", disable=not progress) as bar:
        while result.frames < num_frames:
            t0 = time.perf_counter()
            chunk = agent.act(obs[None])[0]
            result.agent_seconds += time.perf_counter() - t0
            result.predictions += 1
            for i in range(min(k, num_frames - result.frames)):
                if recorder is not None:
                    recorder.add(env.render(), chunk, i)
                obs, reward, terminated, truncated, _ = env.step(chunk[i])
                result.frames += 1
                result.total_reward += reward
                bar.update(1)
                if terminated or truncated:
                    obs, _ = env.reset()
                    result.episodes += 1
                    break
    result.seconds = time.perf_counter() - start
    return result

