"""A GIF of the trained policy playing one task's game, each frame beside the chunk it is executing
(`sim_bridge.visualize.draw_chunk`): the quickest way to see whether it follows the ball or just twitches."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def policy_gif(
    policy_dir: Path,
    env_spec: str,
    path: Path,
    frames: int,
    execute: int,
    temperature: float,
    every: int = 2,
    width: int = 512,
    seed: int = 0,
) -> Path:
    """Play `frames` game frames and write every `every`-th as a GIF frame `width` pixels wide (PIL)."""
    from PIL import Image

    from nitrogen_jax.policy import Policy
    from nitrogen_jax.sim_bridge.agent import PolicyAgent
    from nitrogen_jax.sim_bridge.games import make_env
    from nitrogen_jax.sim_bridge.play import execute_chunks
    from nitrogen_jax.sim_bridge.visualize import draw_chunk

    if frames < 1:
        raise ValueError(f"GIF frames must be >= 1, got {frames}")
    agent = PolicyAgent(Policy.load(policy_dir), temperature, seed=seed)
    images: list[Image.Image] = []
    with make_env(env_spec) as env:
        obs, _ = env.reset(seed=seed)
        n = 0

        def grab(chunk, i):
            if n % every == 0:
                canvas = draw_chunk(env.render(), chunk, i)
                h = round(canvas.shape[0] * width / canvas.shape[1])
                images.append(Image.fromarray(cv2.resize(canvas, (width, h), interpolation=cv2.INTER_AREA)))

        for _ in execute_chunks(env, agent, obs, execute, grab):
            n += 1
            if n >= frames:
                break
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=round(1000 * every / 60), loop=0, optimize=True
    )
    return path


def gif_frame_count(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return int(getattr(im, "n_frames", 1))


def as_array(path: Path) -> np.ndarray:
    """The GIF's first frame as RGB (tests look at it)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
