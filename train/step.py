"""The train step: one pure function (state, batch) -> (state, metrics), jitted with shardings and donated state.

Gradient accumulation runs inside the step as a `lax.scan` over micro-batches, so one call is one optimiser
update whatever the accumulation. Micro-batch j takes rows j, j + k, j + 2k, ... of the global batch, which keeps
every micro-batch spread over all data-parallel devices without moving data between them.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from nitrogen_jax.data.augment import AUGMENT_KEY
from nitrogen_jax.data.device_augment import augment_on_device
from nitrogen_jax.model import NitroGenModel, compute_loss
from nitrogen_jax.train.config import TrainConfig
from nitrogen_jax.train.sharding import batch_sharding, replicated
from nitrogen_jax.train.state import TrainState


def ema_decay_at(step, decay: float):
    """min(decay, (1 + n) / (10 + n)): a fast start, then the configured decay."""
    n = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def split_micro_batches(batch: dict, k: int) -> dict:
    """[B, ...] -> [k, B/k, ...] with micro-batch j = rows j::k (a device-local reshape under data sharding)."""
    return {key: jnp.swapaxes(v.reshape(v.shape[0] // k, k, *v.shape[1:]), 0, 1) for key, v in batch.items()}


def make_train_step(
    model: NitroGenModel,
    tx: optax.GradientTransformation,
    cfg: TrainConfig,
    trainable,
    schedule: optax.Schedule,
    mesh: Mesh,
    shardings: TrainState,
) -> Callable:
    """The jitted `train_step(state, batch) -> (state, metrics)`; `state` is donated."""

    def loss_fn(params, batch, rng):
        # Frozen parameters get no gradient at all (not merely a zero update), so XLA skips their backward pass.
        params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, trainable)
        frames = batch["frames"]
        if AUGMENT_KEY in batch:  # the loader drew the augmentation, the device applies it (data/device_augment.py)
            frames = augment_on_device(frames, batch[AUGMENT_KEY])
        return compute_loss(model, params, frames, batch["actions"], batch["action_mask"], rng, train=True)

    grad_fn = jax.value_and_grad(loss_fn)

    def train_step(state: TrainState, batch: dict):
        rng, step_rng = jax.random.split(state.rng)
        k = cfg.grad_accum_steps
        if k == 1:
            loss, grads = grad_fn(state.params, batch, step_rng)
        else:
            micro = split_micro_batches(batch, k)

            def accumulate(carry, xs):
                loss_sum, grad_sum = carry
                mb, r = xs
                loss, grads = grad_fn(state.params, mb, r)
                return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (loss, grads), _ = jax.lax.scan(
                accumulate, (jnp.zeros((), jnp.float32), zeros), (micro, jax.random.split(step_rng, k))
            )
            loss, grads = loss / k, jax.tree.map(lambda g: g / k, grads)

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        d = ema_decay_at(state.step, cfg.ema_decay)
        ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, state.ema_params, params)
        trained_grads = jax.tree.map(lambda g, t: g if t else jnp.zeros((), g.dtype), grads, trainable)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(trained_grads),
            "param_norm": optax.tree.norm(params),
            "learning_rate": schedule(state.step),
        }
        new_state = TrainState(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state, rng=rng)
        return new_state, metrics

    return jax.jit(
        train_step,
        in_shardings=(shardings, batch_sharding(mesh)),  # one sharding for every batch key (rows over data x fsdp)
        out_shardings=(shardings, replicated(mesh)),
        donate_argnums=(0,),
    )


def make_eval_step(model: NitroGenModel, mesh: Mesh, param_shardings) -> Callable:
    """jitted (params, batch, rng) -> validation velocity loss (no dropout); evaluate with the EMA params."""

    def eval_step(params, batch, rng):
        return compute_loss(model, params, batch["frames"], batch["actions"], batch["action_mask"], rng, train=False)

    return jax.jit(
        eval_step,
        in_shardings=(param_shardings, batch_sharding(mesh), replicated(mesh)),
        out_shardings=replicated(mesh),
    )
