"""One `Policy.sample` call for the frames of many game sessions, each with its own noise stream.

Each session keeps a JAX key; a chunk for it splits the key and draws temperature * normal(sub, (1, H, A)), the
noise `Policy.sample(rng=sub)` would draw for that session alone, so a session's chunk does not depend on who else
is in the batch (up to the float rounding of a larger matmul). Only power-of-two batch sizes (and max_batch) are
compiled, all at start-up. On an accelerator a batch is padded up to the next such size: one call, the padding
nearly free. On CPU the work grows with every frame, so padding is pure waste: a batch of 13 runs as 8 + 4 + 1.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from nitrogen_jax.actions import RELEASE_LAYOUT
from nitrogen_jax.policy import Policy

RELEASE_BUTTON_SLOTS = len(RELEASE_LAYOUT.button_names)


def batch_buckets(max_batch: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to and including max_batch."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    sizes = [1 << i for i in range(max_batch.bit_length()) if 1 << i < max_batch]
    return (*sizes, max_batch)


class BatchSampler:
    """frames of n sessions + their keys -> n action chunks in the release's decoded units + the advanced keys."""

    def __init__(
        self,
        policy: Policy,
        *,
        temperature: float = 1.0,
        num_steps: int | None = None,
        max_batch: int = 16,
        pad: bool | None = None,
    ):
        self.policy = policy
        self.pad = jax.default_backend() != "cpu" if pad is None else pad
        self.temperature = float(temperature)
        self.num_steps = num_steps
        self.buckets = batch_buckets(max_batch)
        c = policy.config
        self._noise = jax.jit(
            jax.vmap(
                functools.partial(_next_noise, shape=(1, c.action_horizon, c.action_dim), temperature=self.temperature)
            )
        )

    @property
    def max_batch(self) -> int:
        return self.buckets[-1]

    def warm_up(self, every_bucket: bool = True) -> float:
        """Compile (and run once) each bucket's shape; returns the seconds it took."""
        s, t0 = self.policy.config.vision.image_size, time.perf_counter()
        for n in self.buckets if every_bucket else self.buckets[:1]:
            self.sample(np.zeros((n, s, s, 3), np.uint8), [jax.random.key(0)] * n)
        return time.perf_counter() - t0

    def sample(self, frames: np.ndarray, keys: list) -> tuple[list[dict[str, np.ndarray]], list]:
        n = len(keys)
        if not 1 <= n <= self.max_batch or frames.shape[0] != n:
            raise ValueError(f"a batch is 1..{self.max_batch} frames with one key each, got {frames.shape[0]} and {n}")
        preds, new_keys, start = [], [], 0
        for size in self._calls(n):
            p, k = self._sample_padded(frames[start : start + size], keys[start : start + size])
            preds += p
            new_keys += k
            start += size
        return preds, new_keys

    def _calls(self, n: int) -> list[int]:
        """Batch sizes to run n frames as: one padded call, or (CPU) compiled sizes that add up to n exactly."""
        if self.pad:
            return [n]
        sizes = []
        for b in reversed(self.buckets):
            while n >= b:
                sizes.append(b)
                n -= b
        return sizes

    def _sample_padded(self, frames: np.ndarray, keys: list) -> tuple[list[dict[str, np.ndarray]], list]:
        n = len(keys)
        bucket = next(b for b in self.buckets if b >= n)
        new_keys, noise = self._noise(jnp.stack(keys + keys[:1] * (bucket - n)))
        if bucket > n:
            frames = np.concatenate([frames, np.zeros((bucket - n, *frames.shape[1:]), np.uint8)])
        chunks = np.asarray(self.policy.sample(frames, noise=noise[:, 0], num_steps=self.num_steps))[:n]
        return [self._release_units(chunk) for chunk in chunks], list(new_keys[:n])

    def _release_units(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        pad = self.policy.config.layout.decode(chunk)
        return {
            "j_left": pad.j_left,
            "j_right": pad.j_right,
            "buttons": RELEASE_LAYOUT.encode(pad)[:, :RELEASE_BUTTON_SLOTS],
        }


def _next_noise(key, shape, temperature):
    key, sub = jax.random.split(key)
    return key, jnp.float32(temperature) * jax.random.normal(sub, shape, jnp.float32)
