"""Flow matching with the release's conventions.

t = 0 is noise, t = 1 is data: x_t = (1 - t) * eps + t * a, target velocity a - eps. The model sees t only as an
integer bucket floor(float32(t) * 1000). Training draws t = s * (1 - Beta(alpha, beta)); sampling integrates
16 (configurable) Euler steps at t_k = k / n, bucketed as int(k / n * 1000) in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def time_bucket(t, num_buckets: int = 1000):
    """float t [B] -> int32 buckets, computed in float32 as the release's training does (0.77 -> 770)."""
    return jnp.floor(jnp.asarray(t, jnp.float32) * jnp.float32(num_buckets)).astype(jnp.int32)


def sample_time(rng, batch_size: int, alpha: float, beta: float, s: float):
    """Training times t = s * (1 - Beta(alpha, beta)): weighted towards the noisy end, never exactly 1."""
    return s * (1.0 - jax.random.beta(rng, alpha, beta, (batch_size,), dtype=jnp.float32))


def interpolate(noise, actions, t):
    """x_t = (1 - t) * noise + t * actions, and the target velocity actions - noise."""
    t = t[:, None, None]
    return (1.0 - t) * noise + t * actions, actions - noise


def masked_velocity_mse(pred, target, mask):
    """Mean squared velocity error over the entries where mask is 1, divided by the mask's sum."""
    mask = jnp.broadcast_to(mask.astype(jnp.float32), pred.shape)
    return jnp.sum(mask * jnp.square(pred - target)) / jnp.maximum(jnp.sum(mask), 1.0)


def euler_buckets(num_steps: int, num_buckets: int = 1000) -> np.ndarray:
    """The sampler's time buckets int(k / n * num_buckets) for k < n, in float64 like the release (0, 62, 125, ...)."""
    return np.array([int(k / num_steps * num_buckets) for k in range(num_steps)], np.int32)


def euler_sample(velocity_fn: Callable, noise, num_steps: int, num_buckets: int = 1000):
    """Integrate dx/dt = velocity_fn(x, bucket) from t = 0 (noise) to t = 1 with `num_steps` Euler steps.

    Runs as one `lax.scan`, so it traces velocity_fn once whatever num_steps is.
    """
    dt = 1.0 / num_steps

    def step(x, bucket):
        b = jnp.full((x.shape[0],), bucket, jnp.int32)
        return x + dt * velocity_fn(x, b), None

    x, _ = jax.lax.scan(step, noise, jnp.asarray(euler_buckets(num_steps, num_buckets)))
    return x
