"""The NitroGen vision-action model: SigLIP tower -> VL mixer -> DiT over the action chunk.

`NitroGenModel` exposes the pieces the sampler needs separately (`encode`, `context_kv`, `velocity`), so the image
is encoded and mixed once per frame and the cross-attention keys/values are projected once, whatever the number of
Euler steps. `__call__` is the training path: frames, noisy actions and time buckets -> velocity.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from nitrogen_jax.config import NitroGenConfig, TransformerConfig
from nitrogen_jax.layers import Attention, FeedForward, sinusoid_table, timestep_sinusoid
from nitrogen_jax.vision import SiglipVisionTower

TIME_EMBED_CHANNELS = 256


def normalize_frames(frames):
    """uint8 RGB [B, H, W, 3] -> float32 in [-1, 1]: (x / 255 - 0.5) / 0.5, as the release's image processor."""
    return (frames.astype(jnp.float32) / 255.0 - 0.5) / 0.5


class TransformerBlock(nn.Module):
    """A diffusers-style block: x += Attn(norm1(x)); x += FFN(norm3(x)).

    ada_norm=False (VL mixer): norm1/norm3 are affine LayerNorms.
    ada_norm=True (DiT): norm1 is AdaLN, LN(x) * (1 + scale) + shift with (scale, shift) from Linear(SiLU(temb)),
    and norm3 has no affine parameters. Sinusoidal positions, when configured, go on the attention input only.
    """

    cfg: TransformerConfig
    ada_norm: bool = False
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        c, affine = self.cfg, not self.ada_norm
        if self.ada_norm:
            self.norm1_linear = nn.Dense(2 * c.width, dtype=self.dtype)
        self.norm1 = nn.LayerNorm(c.norm_eps, use_scale=affine, use_bias=affine, dtype=self.dtype)
        self.attn = Attention(c.num_heads, c.head_dim, c.width, dtype=self.dtype)
        self.norm3 = nn.LayerNorm(c.norm_eps, use_scale=affine, use_bias=affine, dtype=self.dtype)
        self.ff = FeedForward(c.mlp_ratio * c.width, c.width, c.dropout, dtype=self.dtype)
        self.drop = nn.Dropout(c.dropout)

    def project_kv(self, context):
        return self.attn.project_kv(context)

    def __call__(self, x, temb=None, context=None, kv=None, deterministic: bool = True):
        h = self.norm1(x)
        if self.ada_norm:
            scale, shift = jnp.split(self.norm1_linear(nn.silu(temb)), 2, axis=-1)
            h = h * (1 + scale[:, None]) + shift[:, None]
        if self.cfg.sinusoidal_positions:
            h = h + jnp.asarray(sinusoid_table(self.cfg.max_positions, self.cfg.width)[: x.shape[1]], h.dtype)
        a = self.drop(self.attn(h, context=context, kv=kv), deterministic=deterministic)
        if self.cfg.final_dropout:
            a = self.drop(a, deterministic=deterministic)
        x = x + a
        return x + self.ff(self.norm3(x), deterministic=deterministic)


class VLMixer(nn.Module):
    """Self-attention blocks over the (left-padded) image tokens; time-independent, so run once per frame."""

    cfg: TransformerConfig
    dtype: jnp.dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        block = nn.remat(TransformerBlock, static_argnums=(5,)) if self.remat else TransformerBlock
        for i in range(self.cfg.num_layers):
            x = block(self.cfg, False, self.dtype, name=f"block_{i}")(x, None, None, None, deterministic)
        return x


class DiT(nn.Module):
    """Diffusion transformer over action tokens: AdaLN time conditioning, even blocks cross-attend to the mixed
    image tokens (all blocks when not interleaved), odd blocks self-attend; AdaLN output head."""

    cfg: TransformerConfig
    output_dim: int
    interleave_self_attention: bool = True
    dtype: jnp.dtype = jnp.float32
    remat: bool = False

    def setup(self):
        c = self.cfg
        self.time_linear_1 = nn.Dense(c.width, dtype=self.dtype)
        self.time_linear_2 = nn.Dense(c.width, dtype=self.dtype)
        block = nn.remat(TransformerBlock, static_argnums=(5,)) if self.remat else TransformerBlock
        self.blocks = [block(c, True, self.dtype, name=f"block_{i}") for i in range(c.num_layers)]
        self.norm_out = nn.LayerNorm(1e-6, use_scale=False, use_bias=False, dtype=self.dtype)
        self.proj_out_1 = nn.Dense(2 * c.width, dtype=self.dtype)
        self.proj_out_2 = nn.Dense(self.output_dim, dtype=self.dtype)

    def is_cross(self, i: int) -> bool:
        return i % 2 == 0 or not self.interleave_self_attention

    def time_embedding(self, bucket):
        t = timestep_sinusoid(bucket, TIME_EMBED_CHANNELS, TIME_EMBED_CHANNELS // 2 - 1, cos_first=True)
        return self.time_linear_2(nn.silu(self.time_linear_1(t.astype(self.dtype))))

    def context_kv(self, context):
        """Keys/values of every cross-attention block (None for self-attention blocks)."""
        return tuple(b.project_kv(context) if self.is_cross(i) else None for i, b in enumerate(self.blocks))

    def __call__(self, x, bucket, context=None, kv=None, deterministic: bool = True):
        if kv is None:
            kv = self.context_kv(context)
        temb = self.time_embedding(bucket)
        for i, b in enumerate(self.blocks):
            ctx = context if self.is_cross(i) else None
            x = b(x, temb, ctx, kv[i], deterministic)
        shift, scale = jnp.split(self.proj_out_1(nn.silu(temb)), 2, axis=-1)
        return self.proj_out_2(self.norm_out(x) * (1 + scale[:, None]) + shift[:, None])


class ActionEncoder(nn.Module):
    """W1(actions) ++ sinusoid(time bucket) -> W2 + swish -> W3 (the release's single-embodiment encoder)."""

    hidden_size: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, actions, bucket):
        h = self.hidden_size
        a = nn.Dense(h, dtype=self.dtype, name="W1")(actions.astype(self.dtype))
        tau = timestep_sinusoid(bucket, h, h // 2, cos_first=False).astype(self.dtype)
        tau = jnp.broadcast_to(tau[:, None, :], a.shape)
        x = nn.swish(nn.Dense(h, dtype=self.dtype, name="W2")(jnp.concatenate([a, tau], axis=-1)))
        return nn.Dense(h, dtype=self.dtype, name="W3")(x)


class ActionDecoder(nn.Module):
    hidden_size: int
    action_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden_size, dtype=self.dtype, name="layer1")(x))
        return nn.Dense(self.action_dim, dtype=self.dtype, name="layer2")(x)


class NitroGenModel(nn.Module):
    config: NitroGenConfig
    remat: bool = False

    def setup(self):
        c = self.config
        dtype = jnp.dtype(c.compute_dtype)
        self.vision = SiglipVisionTower(c.vision, dtype, self.remat)
        self.mixer = VLMixer(c.mixer, dtype, self.remat)
        self.dit = DiT(c.dit, c.dit_output_dim, c.interleave_self_attention, dtype, self.remat)
        self.action_encoder = ActionEncoder(c.hidden_size, dtype)
        self.action_pos_embed = self.param("action_pos_embed", nn.initializers.normal(0.02), (c.max_seq_len, c.hidden_size))
        self.action_decoder = ActionDecoder(c.hidden_size, c.action_dim, dtype)

    def encode(self, frames, deterministic: bool = True):
        """uint8 frames [B, S, S, 3] -> mixed context tokens [B, context_len, width] (image left-padded with zeros)."""
        x = self.vision(normalize_frames(frames))
        pad = self.config.context_len - x.shape[1]
        if pad:
            x = jnp.concatenate([jnp.zeros((x.shape[0], pad, x.shape[2]), x.dtype), x], axis=1)
        return self.mixer(x, deterministic)

    def context_kv(self, context):
        return self.dit.context_kv(context)

    def velocity(self, actions, bucket, context=None, kv=None, deterministic: bool = True):
        """Noisy actions [B, H, A] at integer time buckets [B] -> predicted velocity [B, H, A] (float32)."""
        x = self.action_encoder(actions, bucket)
        if self.config.add_pos_embed:
            x = x + self.action_pos_embed[: x.shape[1]].astype(x.dtype)
        x = self.dit(x, bucket, context, kv, deterministic)
        return self.action_decoder(x).astype(jnp.float32)

    def __call__(self, frames, actions, bucket, deterministic: bool = True):
        return self.velocity(actions, bucket, context=self.encode(frames, deterministic), deterministic=deterministic)
