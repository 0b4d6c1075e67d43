"""SigLIP / SigLIP 2 FixRes vision tower: the image encoder of the policy.

Patch-conv embedding, learned positions, pre-LN encoder blocks (tanh-GELU MLP), post-LN. Returns all patch tokens
(`last_hidden_state` in transformers' terms); the pooling head is not built because the policy never uses it.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from nitrogen_jax.config import VisionConfig
from nitrogen_jax.layers import Attention, FeedForward


class EncoderBlock(nn.Module):
    cfg: VisionConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = self.cfg

        def ln(name: str) -> nn.LayerNorm:
            return nn.LayerNorm(c.layer_norm_eps, dtype=self.dtype, name=name)

        x = x + Attention(c.num_heads, c.width // c.num_heads, c.width, dtype=self.dtype, name="attn")(ln("ln1")(x))
        return x + FeedForward(c.mlp_dim, c.width, dtype=self.dtype, name="mlp")(ln("ln2")(x))


class SiglipVisionTower(nn.Module):
    """Images normalised to [-1, 1], float [B, S, S, 3] -> patch tokens [B, (S / patch)^2, width]."""

    cfg: VisionConfig
    dtype: jnp.dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, images):
        c = self.cfg
        if images.shape[1:] != (c.image_size, c.image_size, 3):
            raise ValueError(f"vision tower expects images [B, {c.image_size}, {c.image_size}, 3], got {images.shape}")
        x = nn.Conv(
            c.width,
            (c.patch_size, c.patch_size),
            strides=c.patch_size,
            padding="VALID",
            dtype=self.dtype,
            name="patch_embed",
        )(images.astype(self.dtype))
        x = x.reshape(x.shape[0], -1, c.width)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (c.num_patches, c.width))
        x = x + pos.astype(self.dtype)
        block = nn.remat(EncoderBlock) if self.remat else EncoderBlock
        for i in range(c.depth):
            x = block(c, self.dtype, name=f"block_{i}")(x)
        return nn.LayerNorm(c.layer_norm_eps, dtype=self.dtype, name="post_ln")(x)
