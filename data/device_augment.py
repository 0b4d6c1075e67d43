"""The training augmentations applied on the accelerator, from the per-record numbers the loader drew.

On the host, the rotate+crop warp and the brightness/contrast table cost about as much CPU as the JPEG decode;
in the jitted train step they are a gather and a few elementwise ops on a batch already on the device, small
beside the vision tower's forward pass. The maths is `RandomGeometric` then `RandomPhotometric`
(data/augment.py): output pixel p samples the source at c + s R(theta) (p - centre), bilinear, with reflect-101
borders (OpenCV's BORDER_REFLECT_101 is scipy's 'mirror'); then b (c (x - mean) + mean), clipped to [0, 255].
Interpolation is done in float here (OpenCV rounds to 5-bit weights), so pixels differ by a level or two.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _augment_one(frame: jax.Array, p: jax.Array) -> jax.Array:
    theta, s, cx, cy, b, c = (p[i] for i in range(6))
    h, w = frame.shape[:2]
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    dx, dy = xs - w / 2, ys - h / 2
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    sx = cx + s * (cos * dx - sin * dy)
    sy = cy + s * (sin * dx + cos * dy)
    image = frame.astype(jnp.float32)
    warped = jnp.stack(
        [
            jax.scipy.ndimage.map_coordinates(image[..., ch], [sy, sx], order=1, mode="mirror")
            for ch in range(frame.shape[-1])
        ],
        axis=-1,
    )
    mean = jnp.mean(warped)
    return jnp.clip(b * (c * (warped - mean) + mean), 0, 255).astype(jnp.uint8)


def augment_on_device(frames: jax.Array, params: jax.Array) -> jax.Array:
    """uint8 [B, H, W, C] frames and float32 [B, 6] loader-drawn parameters -> augmented uint8 frames."""
    return jax.vmap(_augment_one)(frames, params.astype(jnp.float32))
