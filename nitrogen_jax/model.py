"""The NitroGen vision-action model: SigLIP tower -> VL mixer -> DiT over the action chunk.

`NitroGenModel` exposes the pieces the loss and the sampler need separately (`condition`: the frame encoded and
mixed, the cross-attention keys/values and global term projected, the auxiliary chunk; `velocity`), so a frame is
conditioned on once, whatever the number of Euler steps. `__call__` is both in one: frames, noisy actions and time
buckets -> velocity.

The model's verbs live here beside it, as pure functions of params (openpi's `compute_loss` / `sample_actions`):
`init_params` / `abstract_params` / `count_parameters`, `compute_loss` (the flow-matching training loss) and
`make_sampler` (the one-jit Euler sampler). `Policy` is only the facade over them (input checks, files, import).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from nitrogen_jax.config import NitroGenConfig, TransformerConfig
from nitrogen_jax.flow import euler_sample, interpolate, masked_velocity_mse, sample_time, time_bucket
from nitrogen_jax.layers import Attention, FeedForward, sinusoid_table, timestep_sinusoid
from nitrogen_jax.vision import SiglipVisionTower

TIME_EMBED_CHANNELS = 256


def is_cross_attention_block(i: int, interleave_self_attention: bool) -> bool:
    """The release's rule: with interleaving, even DiT blocks cross-attend to the image, odd ones self-attend."""
    return i % 2 == 0 or not interleave_self_attention


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
    image tokens (all blocks when not interleaved), odd blocks self-attend; AdaLN output head.

    global_context (not in the release) adds a linear map of all image tokens, position by position, to the time
    embedding that every block's AdaLN reads. Cross-attention weighs tokens by content, so where a token sits
    reaches the actions only through position embeddings mixed into it; trained from scratch, that path never
    learned to compare two objects' columns, and this one did (bench/relational_probe.py, docs/e2e.md).
    """

    cfg: TransformerConfig
    output_dim: int
    interleave_self_attention: bool = True
    global_context: bool = False
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
        if self.global_context:
            self.global_proj = nn.Dense(c.width, dtype=self.dtype)

    def is_cross(self, i: int) -> bool:
        return is_cross_attention_block(i, self.interleave_self_attention)

    def time_embedding(self, bucket):
        t = timestep_sinusoid(bucket, TIME_EMBED_CHANNELS, TIME_EMBED_CHANNELS // 2 - 1, cos_first=True)
        return self.time_linear_2(nn.silu(self.time_linear_1(t.astype(self.dtype))))

    def context_kv(self, context):
        """Keys/values of every cross-attention block (None for self-attention blocks), then, with global_context,
        the image's term of the time embedding: everything the steps need from the image, computed once."""
        kv = tuple(b.project_kv(context) if self.is_cross(i) else None for i, b in enumerate(self.blocks))
        if self.global_context:
            kv += (self.global_proj(context.reshape(context.shape[0], -1)),)
        return kv

    def __call__(self, x, bucket, context=None, kv=None, deterministic: bool = True):
        if kv is None:
            kv = self.context_kv(context)
        temb = self.time_embedding(bucket)
        if self.global_context:
            temb = temb + kv[-1]
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
        self.dit = DiT(c.dit, c.dit_output_dim, c.interleave_self_attention, c.global_context, dtype, self.remat)
        self.action_encoder = ActionEncoder(c.hidden_size, dtype)
        self.action_pos_embed = self.param(
            "action_pos_embed", nn.initializers.normal(0.02), (c.max_seq_len, c.hidden_size)
        )
        self.action_decoder = ActionDecoder(c.hidden_size, c.action_dim, dtype)
        if c.action_aux_weight:
            self.aux_head = nn.Dense(c.action_horizon * c.action_dim, dtype=dtype)

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

    def condition(self, frames, deterministic: bool = True):
        """Everything the velocity needs from the frame, computed once per frame: (the DiT's context K/V and global
        term, the auxiliary head's clean chunk [B, H, A] or None without action_aux_weight)."""
        kv = self.context_kv(self.encode(frames, deterministic))
        if not self.config.action_aux_weight:
            return kv, None
        c = self.config
        return kv, self.aux_head(kv[-1]).reshape(-1, c.action_horizon, c.action_dim).astype(jnp.float32)

    def __call__(self, frames, actions, bucket, deterministic: bool = True):
        kv, _ = self.condition(frames, deterministic)
        return self.velocity(actions, bucket, kv=kv, deterministic=deterministic)


# ------------------------------------------------------------------------------------------------ verbs
PARTS = ("vision", "mixer", "dit", "action_encoder", "action_decoder", "action_pos_embed", "aux_head")


def dummy_inputs(config: NitroGenConfig, batch_size: int = 1):
    """Zero (frames uint8, actions float32, buckets int32) of the config's shapes: what `init` traces with."""
    s = config.vision.image_size
    return (
        jnp.zeros((batch_size, s, s, 3), jnp.uint8),
        jnp.zeros((batch_size, config.action_horizon, config.action_dim), jnp.float32),
        jnp.zeros((batch_size,), jnp.int32),
    )


def random_params(model: NitroGenModel, rng) -> dict:
    """The traceable init: float32 params from `rng`. Call it under jit or eval_shape (as the functions below and
    the sharded train-state builder do), so that only the params are ever materialised."""
    return model.init(rng, *dummy_inputs(model.config))["params"]


def init_params(config: NitroGenConfig, rng) -> dict:
    """Random float32 params of `config`."""
    return jax.jit(partial(random_params, NitroGenModel(config)))(rng)


def abstract_params(config: NitroGenConfig) -> dict:
    """The params pytree as ShapeDtypeStructs: shapes and sizes without touching memory."""
    return jax.eval_shape(partial(random_params, NitroGenModel(config)), jax.random.key(0))


def count_parameters(params_or_config) -> dict[str, int]:
    """Parameter count per part (`PARTS`; aux_head is 0 without action_aux_weight) and total."""
    params = abstract_params(params_or_config) if isinstance(params_or_config, NitroGenConfig) else params_or_config
    sizes = {part: sum(math.prod(x.shape) for x in jax.tree.leaves(params.get(part, {}))) for part in PARTS}
    sizes["total"] = sum(sizes.values())
    return sizes


def compute_loss(model: NitroGenModel, params, frames, actions, mask, rng, train: bool = True):
    """The training loss: masked velocity MSE at Beta-distributed times (release conventions), plus, with
    action_aux_weight, that weight times the auxiliary head's masked MSE to the clean chunk. The frame is
    encoded once (`condition`); the velocity reads its K/V.

    `rng` draws the noise, the times and (when train) the dropout masks.
    """
    c = model.config
    chex.assert_rank(frames, 4)
    chex.assert_shape(actions, (frames.shape[0], c.action_horizon, c.action_dim))
    chex.assert_equal_shape([actions, mask])
    noise_rng, time_rng, dropout_rng = jax.random.split(rng, 3)
    variables, rngs = {"params": params}, ({"dropout": dropout_rng} if train else None)
    kv, aux = model.apply(variables, frames, deterministic=not train, rngs=rngs, method=NitroGenModel.condition)
    noise = jax.random.normal(noise_rng, actions.shape, jnp.float32)
    t = sample_time(time_rng, actions.shape[0], c.noise_beta_alpha, c.noise_beta_beta, c.noise_s)
    x_t, target = interpolate(flow_start(c, noise, aux), actions, t)
    bucket = time_bucket(t, c.num_timestep_buckets)
    pred = model.apply(
        variables, x_t, bucket, None, kv, deterministic=not train, rngs=rngs, method=NitroGenModel.velocity
    )
    loss = masked_velocity_mse(pred, target, mask)
    if aux is not None:
        loss = loss + c.action_aux_weight * masked_velocity_mse(aux, actions, mask)
    return loss


def flow_start(config: NitroGenConfig, noise, aux):
    """Where the flow starts: the noise, or with action_aux_prior the noise around the auxiliary head's chunk (no
    gradient flows back through it: the auxiliary loss alone trains that head)."""
    return noise + jax.lax.stop_gradient(aux) if config.action_aux_prior else noise


def make_sampler(model: NitroGenModel, num_steps: int) -> Callable:
    """A jitted (params, frames uint8 [B,S,S,3], noise [B,H,A]) -> actions [B,H,A].

    The frame is encoded and mixed once and the cross-attention K/V projected once; the Euler steps reuse them.
    With bf16 compute the float32 params are cast once per call.
    """
    c = model.config
    compute = jnp.dtype(c.compute_dtype)

    def sample(params, frames, noise):
        if compute != jnp.float32:
            # Cast once, outside the step loop: every Euler step then reads half the bytes.
            params = jax.tree.map(lambda p: p.astype(compute), params)
        variables = {"params": params}
        kv, aux = model.apply(variables, frames, method=NitroGenModel.condition)
        noise = flow_start(c, noise, aux)

        def velocity(x, bucket):
            return model.apply(variables, x, bucket, None, kv, method=NitroGenModel.velocity)

        return euler_sample(velocity, noise, num_steps, c.num_timestep_buckets)

    return jax.jit(sample)
