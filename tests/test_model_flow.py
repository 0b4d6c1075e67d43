"""The model's shapes and sizes, flow-matching conventions, the compiled sampler, and input checks."""

from __future__ import annotations

from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nitrogen_jax import Gamepad, NitroGenConfig, Policy, count_parameters, get_config, get_layout
from nitrogen_jax.flow import euler_buckets, euler_sample, masked_velocity_mse, sample_time, time_bucket

# The release's per-part counts (reference doc). Its vision count includes the unused pooling head, which we do
# not build: probe 1024 + attention 4*1024^2 + 4*1024 + LayerNorm 2*1024 + MLP 2*1024*4096 + 4096 + 1024.
RELEASE_POOLING_HEAD = 1024 + 4 * 1024 * 1024 + 4 * 1024 + 2 * 1024 + 2 * 1024 * 4096 + 4096 + 1024


def test_500m_preset_has_the_release_parameter_counts():
    counts = count_parameters(get_config("nitrogen-500m"))  # jax.eval_shape: nothing is allocated
    assert counts["vision"] + RELEASE_POOLING_HEAD == 315_956_224  # "315.96 M"
    assert round(counts["mixer"] / 1e6, 2) == 50.38
    assert round(counts["dit"] / 1e6, 2) == 121.99
    assert round(counts["action_encoder"] / 1e6, 2) == 3.17
    assert round(counts["action_decoder"] / 1e6, 2) == 1.08
    assert round((counts["total"] + RELEASE_POOLING_HEAD) / 1e6, 1) == 493.6


def test_seed_preset_uses_the_20_dim_layout_and_16_frame_chunks():
    c = get_config("seed")
    assert (c.action_dim, c.action_horizon, c.num_steps) == (20, 16, 16)
    assert count_parameters(c)["dit"] == count_parameters(get_config("nitrogen-500m"))["dit"]


def test_config_json_round_trip_and_validation():
    c = get_config("tiny", action_horizon=12, compute_dtype="bfloat16")
    assert NitroGenConfig.from_json(c.to_json()) == c
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_config("huge")
    with pytest.raises(ValueError, match="hidden_size 48 must equal the DiT width 32"):
        get_config("tiny", hidden_size=48)
    with pytest.raises(ValueError, match="unknown NitroGenConfig fields \\['colour'\\]"):
        NitroGenConfig.from_dict({"colour": 1})


def test_time_buckets_follow_the_release():
    assert int(time_bucket(np.float32(0.77))) == 770  # float32 arithmetic; float64 would give 769
    assert euler_buckets(16)[:6].tolist() == [0, 62, 125, 187, 250, 312]
    t = sample_time(jax.random.key(0), 10_000, 1.6, 0.8, 0.999)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 0.999
    assert abs(float(t.mean()) - 0.999 * (1 - 1.6 / 2.4)) < 0.01  # E[Beta(a, b)] = a / (a + b)


@pytest.mark.parametrize("num_steps", [1, 4, 8])
def test_euler_integrates_the_straight_path_field_exactly(num_steps):
    """For data a, the ideal field v(x, t) = (a - x) / (1 - t) is linear in x; Euler follows the straight path exactly."""
    rng = np.random.default_rng(0)
    a, x0 = rng.normal(size=(2, 3, 5)).astype(np.float32), rng.normal(size=(2, 3, 5)).astype(np.float32)

    def velocity(x, bucket):
        t = bucket.astype(jnp.float32)[:, None, None] / 1000.0
        return (a - x) / (1.0 - t)

    np.testing.assert_allclose(euler_sample(velocity, x0, num_steps), a, rtol=1e-5, atol=1e-5)


def test_masked_velocity_mse_ignores_masked_entries():
    pred = jnp.array([[[1.0, 2.0], [3.0, 100.0]]])
    target = jnp.zeros_like(pred)
    mask = jnp.array([[[1.0, 1.0], [1.0, 0.0]]])
    assert float(masked_velocity_mse(pred, target, mask)) == pytest.approx((1 + 4 + 9) / 3)
    assert float(masked_velocity_mse(pred, target, jnp.zeros_like(mask))) == 0.0


@pytest.fixture(scope="module")
def policy():
    return Policy.init("tiny", seed=0)


def frames_for(batch, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)


@pytest.mark.parametrize("global_context", [False, True])
def test_sampler_equals_euler_over_the_full_velocity(policy, global_context):
    """The compiled sampler (image encoded once, cached K/V and global term) gives what stepping `velocity` by
    hand gives; the global_context path exists only where configured."""
    if global_context:
        policy = Policy.init("tiny", seed=0, global_context=True)
    assert ("global_proj" in policy.params["dit"]) == global_context
    frames = frames_for(2)
    noise = np.random.default_rng(1).normal(size=(2, 18, 25)).astype(np.float32)
    x: np.ndarray = noise
    for k in range(4):
        x = x + 0.25 * np.asarray(policy.velocity(frames, x, np.full((2,), k / 4, np.float32)))
    np.testing.assert_allclose(np.asarray(policy.sample(frames, noise=noise)), x, rtol=1e-5, atol=1e-5)


def test_action_aux_loss_adds_the_weighted_clean_chunk_error():
    """With action_aux_weight the loss is the flow loss plus that weight times the auxiliary head's error to the
    clean chunk (read off the global context vector), computed here by hand; with action_aux_prior the flow
    starts from the noise around that chunk."""
    from nitrogen_jax.flow import interpolate, sample_time, time_bucket
    from nitrogen_jax.model import NitroGenModel, compute_loss, init_params

    with pytest.raises(ValueError, match="only with global_context"):
        get_config("tiny", action_aux_weight=1.0)
    with pytest.raises(ValueError, match="needs action_aux_weight"):
        get_config("tiny", global_context=True, action_aux_prior=True)
    cfg = get_config("tiny", global_context=True, action_aux_weight=3.0)
    params = init_params(cfg, jax.random.key(0))
    assert params["aux_head"]["kernel"].shape == (cfg.dit.width, cfg.action_horizon * cfg.action_dim)
    assert "aux_head" not in init_params(cfg.replace(action_aux_weight=0.0), jax.random.key(0))
    frames = jnp.asarray(frames_for(2))
    actions = jax.random.uniform(jax.random.key(2), (2, cfg.action_horizon, cfg.action_dim))
    mask = jnp.ones_like(actions).at[:, :, -1].set(0.0)
    rng = jax.random.key(1)

    def mse(pred, truth):
        return float(jnp.sum(mask * (pred - truth) ** 2) / jnp.sum(mask))

    for prior in (False, True):
        cfg = cfg.replace(action_aux_prior=prior)
        model, v = NitroGenModel(cfg), {"params": params}
        noise_rng, time_rng, _ = jax.random.split(rng, 3)
        noise = jax.random.normal(noise_rng, actions.shape)
        t = sample_time(time_rng, 2, cfg.noise_beta_alpha, cfg.noise_beta_beta, cfg.noise_s)
        # Module.apply is typed as "output, or (output, mutated variables)"; condition returns (kv, aux chunk)
        kv, aux = cast(tuple[Any, jax.Array], model.apply(v, frames, method=NitroGenModel.condition))
        np.testing.assert_allclose(
            np.asarray(aux).reshape(2, -1),
            np.asarray(kv[-1] @ params["aux_head"]["kernel"] + params["aux_head"]["bias"]),
            rtol=1e-5,
            atol=1e-6,
        )
        x_t, target = interpolate(noise + aux if prior else noise, actions, t)
        velocity = model.apply(v, frames, x_t, time_bucket(t, cfg.num_timestep_buckets))
        expected = mse(velocity, target) + 3.0 * mse(aux, actions)
        got = float(compute_loss(model, params, frames, actions, mask, rng, train=False))
        assert got == pytest.approx(expected, rel=1e-5), prior
        assert mse(aux, actions) > 0.01  # the auxiliary term is not negligible at init, so the check has teeth


def test_sampler_with_aux_prior_starts_from_the_aux_chunk():
    """action_aux_prior: the compiled sampler equals Euler steps by hand from noise + the auxiliary chunk."""
    from nitrogen_jax.model import NitroGenModel

    policy = Policy.init("tiny", seed=0, global_context=True, action_aux_weight=1.0, action_aux_prior=True)
    frames = frames_for(2)
    noise = np.random.default_rng(1).normal(size=(2, 18, 25)).astype(np.float32)
    _, aux = cast(
        tuple[Any, jax.Array], policy.model.apply({"params": policy.params}, frames, method=NitroGenModel.condition)
    )
    assert float(jnp.abs(aux).mean()) > 0.01
    x = noise + np.asarray(aux)
    for k in range(4):
        x = x + 0.25 * np.asarray(policy.velocity(frames, x, np.full((2,), k / 4, np.float32)))
    np.testing.assert_allclose(np.asarray(policy.sample(frames, noise=noise)), x, rtol=1e-5, atol=1e-5)


def test_sampler_is_deterministic_and_compiled_once(policy):
    frames = frames_for(1)
    noise = np.random.default_rng(3).normal(size=(1, 18, 25)).astype(np.float32)
    first = np.asarray(policy.sample(frames, noise=noise))
    sampler = policy._samplers[policy.config.num_steps]
    compiled = sampler._cache_size()
    for _ in range(3):
        np.testing.assert_array_equal(np.asarray(policy.sample(frames, noise=noise)), first)
    assert sampler._cache_size() == compiled  # same shapes -> no retrace
    a, b = policy.sample(frames, rng=jax.random.key(5)), policy.sample(frames, rng=jax.random.key(5))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(policy.sample(frames)), np.asarray(policy.sample(frames)))  # own key stream
    policy.sample(frames, num_steps=2)
    assert sampler._cache_size() == compiled and set(policy._samplers) == {2, 4}


def test_temperature_scales_the_initial_noise(policy):
    frames = frames_for(1)
    cold = policy.sample(frames, rng=jax.random.key(0), temperature=0.0)
    zero = policy.sample(frames, noise=np.zeros((1, 18, 25), np.float32))
    np.testing.assert_array_equal(np.asarray(cold), np.asarray(zero))


def test_bf16_compute_keeps_fp32_params_and_tracks_fp32(policy):
    bf16 = policy.with_compute_dtype("bfloat16")
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16.params))
    frames, noise = frames_for(2), np.random.default_rng(4).normal(size=(2, 18, 25)).astype(np.float32)
    ours, ref = np.asarray(bf16.sample(frames, noise=noise)), np.asarray(policy.sample(frames, noise=noise))
    assert ours.dtype == np.float32
    assert np.max(np.abs(ours - ref)) / np.max(np.abs(ref)) < 0.05


def test_bad_inputs_name_what_was_expected(policy):
    good_frames, good_actions, good_t = (
        frames_for(2),
        np.zeros((2, 18, 25), np.float32),
        np.array([0.1, 0.5], np.float32),
    )
    with pytest.raises(ValueError, match=r"frames must be uint8 \[B, 256, 256, 3\] RGB, got uint8 \(2, 224, 224, 3\)"):
        policy.sample(np.zeros((2, 224, 224, 3), np.uint8))
    with pytest.raises(ValueError, match="frames must be uint8.*got float32"):
        policy.sample(good_frames.astype(np.float32))
    with pytest.raises(
        ValueError, match=r"actions must be float32 \[B=2, H=18, A=25\] \(release layout\), got float32 \(2, 16, 20\)"
    ):
        policy.velocity(good_frames, np.zeros((2, 16, 20), np.float32), good_t)
    with pytest.raises(ValueError, match="t must be finite and in \\[0, 1\\]"):
        policy.velocity(good_frames, good_actions, np.array([np.nan, 0.5], np.float32))
    with pytest.raises(ValueError, match="t must be finite and in \\[0, 1\\]"):
        policy.velocity(good_frames, good_actions, np.array([1.5, 0.5], np.float32))
    with pytest.raises(ValueError, match=r"t must be float32 \[B=2\]"):
        policy.velocity(good_frames, good_actions, np.float32(0.5))
    with pytest.raises(ValueError, match="noise must be float32"):
        policy.sample(good_frames, noise=np.zeros((1, 18, 25), np.float32))
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        policy.sample(good_frames, num_steps=0)


def test_save_load_round_trip(policy, tmp_path):
    policy.save(tmp_path / "p")
    loaded = Policy.load(tmp_path / "p")
    assert loaded.config == policy.config
    noise = np.ones((1, 18, 25), np.float32)
    np.testing.assert_array_equal(
        np.asarray(loaded.sample(frames_for(1), noise=noise)), np.asarray(policy.sample(frames_for(1), noise=noise))
    )
    with pytest.raises(FileNotFoundError, match="is not a saved Policy"):
        Policy.load(tmp_path / "nothing")


@pytest.mark.parametrize("layout_name", ["release", "seed"])
def test_action_layouts_round_trip_a_gamepad(layout_name):
    layout = get_layout(layout_name)
    rng = np.random.default_rng(0)
    pad = Gamepad(rng.random((6, 17)) > 0.5, rng.uniform(-1, 1, (6, 2)), rng.uniform(-1, 1, (6, 2)))
    if layout_name == "seed":
        pad.buttons[:, 6] = False  # GUIDE has no slot in the seed layout
    vec = layout.encode(pad)
    assert vec.shape == (6, layout.dim)
    back = layout.decode(vec)
    np.testing.assert_array_equal(back.buttons, pad.buttons)
    np.testing.assert_allclose(back.j_left, pad.j_left, atol=1e-6)
    np.testing.assert_allclose(back.j_right, pad.j_right, atol=1e-6)
    with pytest.raises(ValueError, match=f"layout '{layout_name}' decodes float \\[T, {layout.dim}\\]"):
        layout.decode(np.zeros((6, 3)))


def test_release_layout_stores_sticks_in_unit_range():
    pad = Gamepad.zeros(1)
    pad.j_left[0] = (-1.0, 0.5)
    vec = get_layout("release").encode(pad)
    assert vec[0, 21:23].tolist() == [0.0, 0.75] and vec[0, 23:].tolist() == [0.5, 0.5]


@pytest.mark.slow
def test_remat_gives_the_same_gradients():
    from nitrogen_jax.model import NitroGenModel, compute_loss, dummy_inputs, init_params

    cfg = get_config("tiny")
    params = init_params(cfg, jax.random.key(0))
    frames, actions, _ = dummy_inputs(cfg, 2)

    def loss(p, model):
        return compute_loss(model, p, frames, actions, jnp.ones_like(actions), jax.random.key(1))

    grads = [jax.grad(loss)(params, NitroGenModel(cfg, remat=r)) for r in (False, True)]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), *grads)


def test_gamepad_indexing_gives_one_frame_pads():
    pad = Gamepad(np.eye(3, 17, dtype=bool), np.zeros((3, 2)), np.ones((3, 2)))
    assert len(pad[1]) == 1 and pad[1].pressed(0) == ["dpad_down"]
    assert pad[-1].pressed(0) == ["dpad_left"] and len(pad[0:2]) == 2
    with pytest.raises(IndexError):
        pad[3]


def test_release_button_order_is_the_fact_sheets():
    # the release's 21 button tokens in its own order (../shared/reference/official-nitrogen.md), spelt out so that a
    # change to how the layout builds its list cannot silently reorder what the release's client indexes
    release = (
        "BACK DPAD_DOWN DPAD_LEFT DPAD_RIGHT DPAD_UP EAST GUIDE LEFT_SHOULDER LEFT_THUMB LEFT_TRIGGER NORTH "
        "RIGHT_BOTTOM RIGHT_LEFT RIGHT_RIGHT RIGHT_SHOULDER RIGHT_THUMB RIGHT_TRIGGER RIGHT_UP SOUTH START WEST"
    )
    assert tuple(b.upper() for b in get_layout("release").button_names) == tuple(release.split())
