"""`TrainState` and its sharded initialisation.

The state's shapes come from `jax.eval_shape` first; the shardings are derived from those shapes; then one jit with
`out_shardings` builds the state directly in place, so no device ever holds an unsharded copy of the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from nitrogen_jax.model import NitroGenModel, random_params
from nitrogen_jax.train.sharding import fsdp_shardings, replicated


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimiser updates done
    params: Any  # float32 master weights
    ema_params: Any  # EMA of params, used for evaluation and export
    opt_state: optax.OptState
    rng: jax.Array  # uint32 [2]; split once per step (noise, times, dropout)


def state_shardings(abstract_state: TrainState, mesh: Mesh, min_size: int) -> TrainState:
    """FSDP shardings for params, EMA and optimiser state; step and rng replicated."""
    rep: Any = replicated(mesh)  # a TrainState of shardings, not of arrays
    return TrainState(
        step=rep,
        params=fsdp_shardings(abstract_state.params, mesh, min_size),
        ema_params=fsdp_shardings(abstract_state.ema_params, mesh, min_size),
        opt_state=fsdp_shardings(abstract_state.opt_state, mesh, min_size),
        rng=rep,
    )


def _new_state(params, tx: optax.GradientTransformation, rng) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        ema_params=jax.tree.map(jnp.copy, params),
        opt_state=tx.init(params),
        rng=rng,
    )


def init_train_state(
    model: NitroGenModel, tx: optax.GradientTransformation, mesh: Mesh, seed: int, min_size: int, params=None
) -> tuple[TrainState, TrainState]:
    """(state, shardings). Random init from `seed`, or start from `params` (e.g. a pretrained, already-sharded
    pytree; its buffers are donated into the state)."""
    rng = jax.random.PRNGKey(seed)

    build: Callable[..., TrainState]
    args: tuple
    donate: tuple[int, ...]
    if params is None:

        def build_new(rng):
            param_rng, state_rng = jax.random.split(rng)
            return _new_state(random_params(model, param_rng), tx, state_rng)

        build, args, donate = build_new, (rng,), ()
    else:

        def build_from(params, rng):
            return _new_state(params, tx, jax.random.split(rng)[1])

        build, args, donate = build_from, (params, rng), (0,)

    abstract = jax.eval_shape(build, *args)
    shardings = state_shardings(abstract, mesh, min_size)
    state = jax.jit(build, out_shardings=shardings, donate_argnums=donate)(*args)
    return state, shardings


def abstract_train_state(model: NitroGenModel, tx: optax.GradientTransformation, mesh: Mesh, min_size: int):
    """ShapeDtypeStructs with shardings: the target a checkpoint restores into."""

    def build(rng):
        return _new_state(random_params(model, rng), tx, rng)

    abstract = jax.eval_shape(build, jax.random.PRNGKey(0))
    shardings = state_shardings(abstract, mesh, min_size)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings), shardings
