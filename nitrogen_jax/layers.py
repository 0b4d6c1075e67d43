"""Building blocks shared by the vision tower, the VL mixer and the DiT.

All modules take `dtype` (compute) and keep parameters in float32, so bf16 compute with fp32 master weights is
one setting. Attention runs through `jax.nn.dot_product_attention`, which picks a fused kernel where the
backend has one.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = jnp.dtype  # compute dtype of a module (params stay float32)


def gelu_tanh(x):
    return nn.gelu(x, approximate=True)


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (the layout of every checkpoint we import).

    `kv` lets a caller pass keys and values computed earlier (`project_kv`), so a context that does not change
    across Euler steps is projected once.
    """

    num_heads: int
    head_dim: int
    out_dim: int
    use_bias: bool = True
    dtype: Dtype = jnp.float32

    def setup(self):
        def dense(name: str) -> nn.Dense:
            return nn.Dense(self.num_heads * self.head_dim, use_bias=self.use_bias, dtype=self.dtype, name=name)

        self.query, self.key, self.value = dense("query"), dense("key"), dense("value")
        self.out = nn.Dense(self.out_dim, dtype=self.dtype, name="out")

    def _heads(self, x):
        return x.reshape(*x.shape[:-1], self.num_heads, self.head_dim)

    def project_kv(self, context):
        """context [B, S, C] -> (k, v), each [B, S, heads, head_dim]."""
        return self._heads(self.key(context)), self._heads(self.value(context))

    def __call__(self, x, context=None, kv=None):
        q = self._heads(self.query(x))
        k, v = kv if kv is not None else self.project_kv(x if context is None else context)
        y = jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype))
        return self.out(y.reshape(*x.shape[:-1], self.num_heads * self.head_dim))


class FeedForward(nn.Module):
    """Dense -> tanh-GELU (-> dropout) -> Dense (-> dropout)."""

    hidden_dim: int
    out_dim: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        x = gelu_tanh(nn.Dense(self.hidden_dim, dtype=self.dtype, name="fc1")(x))
        x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
        x = nn.Dense(self.out_dim, dtype=self.dtype, name="fc2")(x)
        return nn.Dropout(self.dropout)(x, deterministic=deterministic)


def sinusoid_table(length: int, width: int) -> np.ndarray:
    """Fixed positions: sin on even channels, cos on odd, frequency exp(-ln(1e4) * 2i / width) for pair i."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    freq = np.exp(-math.log(1e4) * np.arange(0, width, 2, dtype=np.float64) / width)
    table = np.zeros((length, width), np.float32)
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq)
    return table


def timestep_sinusoid(t, dim: int, denominator: int, cos_first: bool):
    """Sinusoid features of a (bucketed) time: frequencies exp(-ln(1e4) * i / denominator), i < dim / 2."""
    half = dim // 2
    freq = jnp.exp(-math.log(1e4) * jnp.arange(half, dtype=jnp.float32) / denominator)
    arg = jnp.asarray(t, jnp.float32)[..., None] * freq
    parts = (jnp.cos(arg), jnp.sin(arg)) if cos_first else (jnp.sin(arg), jnp.cos(arg))
    return jnp.concatenate(parts, axis=-1)
