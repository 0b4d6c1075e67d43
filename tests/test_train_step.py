"""The train step: sharded == single-device, gradient accumulation, freezing, remat, FSDP layout, FLOP count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nitrogen_jax.config import get_config
from nitrogen_jax.model import NitroGenModel, abstract_params, compute_loss, dummy_inputs
from nitrogen_jax.train.config import TrainConfig
from nitrogen_jax.train.flops import forward_flops_per_sample, train_flops_per_sample
from nitrogen_jax.train.optimizer import learning_rate_schedule, make_optimizer, trainable_mask
from nitrogen_jax.train.sharding import check_batch_size, fsdp_spec, make_mesh, place_batch
from nitrogen_jax.train.state import init_train_state
from nitrogen_jax.train.step import make_train_step, split_micro_batches

TINY = get_config("tiny")


def random_batch(batch_size: int, seed: int = 0) -> dict:
    rs = np.random.RandomState(seed)
    h, a = TINY.action_horizon, TINY.action_dim
    mask = np.ones((batch_size, h, a), np.float32)
    mask[0, h // 2 :] = 0.0  # a padded chunk end, as the loader emits near the end of a video
    return {
        "frames": rs.randint(0, 256, (batch_size, 256, 256, 3), dtype=np.uint8),
        "actions": rs.rand(batch_size, h, a).astype(np.float32),
        "action_mask": mask,
    }


def run_steps(cfg: TrainConfig, devices, batches, remat=False):
    model = NitroGenModel(TINY, remat=remat)
    mesh = make_mesh(cfg.mesh_shape, devices)
    trainable = trainable_mask(abstract_params(TINY), cfg.freeze)
    tx = make_optimizer(cfg, trainable)
    state, shardings = init_train_state(model, tx, mesh, cfg.seed, cfg.fsdp_min_size)
    initial = jax.device_get(state.params)
    initial_rng = np.asarray(state.rng)
    step = make_train_step(model, tx, cfg, trainable, learning_rate_schedule(cfg), mesh, shardings)
    metrics = []
    for b in batches:
        state, m = step(state, place_batch(b, mesh))
        metrics.append(jax.device_get(m))
    return state, metrics, initial, initial_rng


def test_eight_device_fsdp_remat_matches_one_device():
    """Same losses and params on a (data 2, fsdp 4) mesh with remat as on one device without: sharding and
    rematerialisation change where and when things are computed, not what."""
    cfg = TrainConfig(warmup_steps=1, num_steps=10, learning_rate=1e-3, grad_accum_steps=2, fsdp_min_size=256)
    batches = [random_batch(8, s) for s in range(3)]
    one, m1, initial, _ = run_steps(cfg.replace(mesh_shape=(1, 1, 1)), jax.devices()[:1], batches)
    eight, m8, _, _ = run_steps(cfg.replace(mesh_shape=(2, 4, 1)), jax.devices()[:8], batches, remat=True)
    assert len(jax.devices()) == 8
    # Parameters really are split over the fsdp axis.
    fc1 = eight.params["vision"]["block_0"]["mlp"]["fc1"]["kernel"]
    assert "fsdp" in fc1.sharding.spec and fc1.addressable_shards[0].data.size == fc1.size // 4
    np.testing.assert_allclose([m["loss"] for m in m8], [m["loss"] for m in m1], rtol=2e-5)
    np.testing.assert_allclose([m["grad_norm"] for m in m8], [m["grad_norm"] for m in m1], rtol=2e-5)
    assert m1[-1]["loss"] < m1[0]["loss"]

    # Adam's first updates are about lr * sign(g), so entries whose gradient is ~0 may go either way: compare the
    # parameter change as a whole.
    def flat(t):
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(t))])

    change, gap = flat(one.params) - flat(initial), flat(eight.params) - flat(one.params)
    assert np.linalg.norm(gap) < 2e-3 * np.linalg.norm(change)


def test_accumulation_freezing_and_ema():
    cfg = TrainConfig(
        warmup_steps=1,
        num_steps=10,
        learning_rate=1e-3,
        grad_accum_steps=2,
        mesh_shape=(1, 1, 1),
        freeze=("vision/.*",),
    )
    batches = [random_batch(4, s) for s in range(2)]
    state, metrics, initial, rng0 = run_steps(cfg, jax.devices()[:1], batches)
    params, ema = jax.device_get(state.params), jax.device_get(state.ema_params)
    # The first step's loss is the mean over micro-batches j = rows j::2, each with its own key.
    model = NitroGenModel(TINY)
    step_rng = jax.random.split(jnp.asarray(rng0))[1]
    micro = split_micro_batches({k: jnp.asarray(v) for k, v in batches[0].items()}, 2)
    expected = np.mean(
        [
            float(compute_loss(model, initial, micro["frames"][j], micro["actions"][j], micro["action_mask"][j], r))
            for j, r in enumerate(jax.random.split(step_rng, 2))
        ]
    )
    np.testing.assert_allclose(metrics[0]["loss"], expected, rtol=1e-5)
    # Frozen: bitwise unchanged, and no optimiser state spent on it; trained parts moved; the EMA follows.
    for a, b in zip(jax.tree.leaves(params["vision"]), jax.tree.leaves(initial["vision"]), strict=False):
        np.testing.assert_array_equal(a, b)

    def moved(p, q):
        return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(q), strict=True))

    assert moved(params["dit"], initial["dit"]) > 1e-5
    assert 0 < moved(ema["dit"], initial["dit"]) < moved(params["dit"], initial["dit"])
    n_trainable = sum(x.size for x in jax.tree.leaves(params)) - sum(x.size for x in jax.tree.leaves(params["vision"]))
    n_opt = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim > 0)
    assert n_opt == 2 * n_trainable  # Adam's mu and nu, for trained params only


def test_freeze_pattern_that_matches_nothing_is_an_error():
    with pytest.raises(ValueError, match=r"match no parameter.*vision"):
        trainable_mask(abstract_params(TINY), ("visoin/.*",))


def test_fsdp_rule_and_batch_checks():
    mesh = make_mesh((2, 4, 1), jax.devices()[:8])
    assert fsdp_spec((1024, 4096), mesh, 16) == jax.sharding.PartitionSpec(None, "fsdp")
    assert fsdp_spec((4098, 1024), mesh, 16) == jax.sharding.PartitionSpec(None, "fsdp")  # 4098 % 4 != 0
    assert fsdp_spec((1024,), mesh, 2**14) == jax.sharding.PartitionSpec(None)  # small: replicated
    mesh3 = make_mesh((1, 2, 4), jax.devices()[:8])
    assert fsdp_spec((64, 256), mesh3, 16) == jax.sharding.PartitionSpec("tensor", "fsdp")
    with pytest.raises(ValueError, match=r"batch size 12 .*data x fsdp = 2 x 4 = 8"):
        check_batch_size(12, mesh)
    with pytest.raises(ValueError, match=r"needs 16 devices, 8 are available"):
        make_mesh((4, 4, 1), jax.devices()[:8])


def test_lr_schedule_warms_up_then_decays():
    s = learning_rate_schedule(TrainConfig(learning_rate=1e-4, warmup_steps=1000, num_steps=10_000))
    assert float(s(0)) == 0.0 and float(s(500)) == pytest.approx(5e-5) and float(s(1000)) == pytest.approx(1e-4)
    assert float(s(10_000)) == pytest.approx(1e-5)


def test_flop_formula_matches_xla_cost_analysis():
    """Our matmul count vs XLA's count of the compiled forward (which adds elementwise work) on a mid-size model."""
    from nitrogen_jax.config import TransformerConfig, decode_variant

    cfg = TINY.replace(
        vision=decode_variant("S/16"),
        mixer=TransformerConfig(num_layers=2, num_heads=6, head_dim=64),
        dit=TransformerConfig(num_layers=4, num_heads=4, head_dim=64),
        hidden_size=256,
        dit_output_dim=256,
    )
    model = NitroGenModel(cfg)
    lowered = jax.jit(lambda p, *x: model.apply({"params": p}, *x)).lower(abstract_params(cfg), *dummy_inputs(cfg, 2))
    analysis = lowered.cost_analysis()
    assert analysis is not None, "XLA gave no cost analysis"
    xla = analysis["flops"]
    ours = 2 * sum(forward_flops_per_sample(cfg).values())
    assert 0.95 < ours / xla <= 1.0
    fwd = forward_flops_per_sample(cfg)
    assert train_flops_per_sample(cfg) == 3 * sum(fwd.values())
    frozen_vision = train_flops_per_sample(cfg, {"mixer", "dit", "action_encoder", "action_decoder"})
    assert frozen_vision == 3 * sum(fwd.values()) - 2 * fwd["vision"]
