"""The Grain loader over real shards: batch contract, exact resume (in-process and with worker processes),
seeded shuffle global across processes, augmentations, corrupt/truncated/empty shards, global arrays on a mesh."""

import gc
import hashlib
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from nitrogen_jax.data.augment import RandomGeometric, RandomPhotometric
from nitrogen_jax.data.device import global_batch
from nitrogen_jax.data.loader import TFRecordSource, make_loader
from nitrogen_jax.data.sample_data import make_sample_shards
from nitrogen_jax.data.tfrecord import RecordError, read_index

H = 18


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_sample_shards(tmp_path_factory.mktemp("loader"), action_horizon=H, num_frames=120)


def digests(batches):
    """One digest per sample (frame + actions), to compare sample sets across loaders."""
    return [
        hashlib.sha1(b["frames"][i].tobytes() + b["actions"][i].tobytes()).hexdigest()
        for b in batches
        for i in range(len(b["frames"]))
    ]


def test_batch_contract(shards):
    b = next(make_loader(shards, batch_size=8, seed=0, action_horizon=12))
    assert set(b) == {"frames", "actions", "action_mask"}
    assert (b["frames"].dtype, b["frames"].shape) == (np.uint8, (8, 256, 256, 3))
    assert (b["actions"].dtype, b["actions"].shape) == (np.float32, (8, 12, 25))
    assert (b["action_mask"].dtype, b["action_mask"].shape) == (np.float32, (8, 12, 25))
    with pytest.raises(ValueError, match="holds 18 action steps, the loader asks for 20"):
        next(make_loader(shards, batch_size=2, seed=0, action_horizon=20))


def test_resume_continues_the_exact_sequence(shards):
    it = make_loader(shards, batch_size=8, seed=3, action_horizon=H)
    for _ in range(5):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(40)]  # runs past the 240-record epoch boundary
    resumed = make_loader(shards, batch_size=8, seed=3, action_horizon=H)
    resumed.set_state(state)
    got = [next(resumed) for _ in range(40)]
    for a, b in zip(expected, got, strict=False):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_resume_with_worker_processes(shards):
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    it = make_loader(shards, batch_size=4, seed=1, action_horizon=H, num_workers=2)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(4)]
    resumed = make_loader(shards, batch_size=4, seed=1, action_horizon=H, num_workers=2)
    resumed.set_state(state)
    assert digests([next(resumed) for _ in range(4)]) == digests(expected)
    del it, resumed  # stop the worker processes now
    gc.collect()


def test_epoch_shuffle_and_process_shards(shards):
    n = len(TFRecordSource(shards))
    assert n == 240
    plain = digests(
        make_loader(shards, batch_size=8, seed=0, action_horizon=H, augment=False, shuffle=False, num_epochs=1)
    )
    a = digests(make_loader(shards, batch_size=8, seed=0, action_horizon=H, augment=False, num_epochs=1))
    b = digests(make_loader(shards, batch_size=8, seed=1, action_horizon=H, augment=False, num_epochs=1))
    assert len(plain) == n and sorted(a) == sorted(plain) == sorted(b)  # each record once per epoch
    assert a != plain and a != b  # shuffled, by seed
    parts = [
        digests(
            make_loader(
                shards,
                batch_size=8,
                seed=0,
                action_horizon=H,
                augment=False,
                num_epochs=1,
                shard_index=i,
                shard_count=3,
            )
        )
        for i in range(3)
    ]
    assert [len(p) for p in parts] == [80, 80, 80] and sorted(sum(parts, [])) == sorted(plain)
    # One global permutation dealt round-robin: the processes' streams interleave back into the 1-process order.
    assert [parts[i % 3][i // 3] for i in range(n)] == a


def test_global_shuffle_every_epoch_over_two_processes(shards):
    """Over 3 epochs of 2 processes, each epoch's union is every record once and epochs are reshuffled."""
    n = len(TFRecordSource(shards))
    per_process = [
        digests(
            make_loader(
                shards,
                batch_size=8,
                seed=5,
                action_horizon=H,
                augment=False,
                num_epochs=3,
                shard_index=i,
                shard_count=2,
            )
        )
        for i in range(2)
    ]
    half = n // 2
    epochs = [
        sorted(per_process[0][e * half : (e + 1) * half] + per_process[1][e * half : (e + 1) * half]) for e in range(3)
    ]
    assert epochs[0] == epochs[1] == epochs[2] and len(set(epochs[0])) == n
    assert per_process[0][:half] != per_process[0][half : 2 * half]  # a new permutation each epoch


def test_augmentations_stay_in_range():
    rng = np.random.default_rng(0)
    flat = {"frames": np.full((256, 256, 3), 100, np.uint8)}
    for _ in range(20):
        out = RandomPhotometric().random_map(flat, rng)["frames"]
        assert 80 <= out.min() == out.max() <= 120  # brightness +-20% (contrast leaves a flat image as it is)
    ramp = {"frames": np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (256, 1, 3))}
    out = RandomPhotometric(brightness=0.0).random_map(ramp, rng)["frames"].astype(int)
    slope = np.polyfit(np.arange(40, 216), out[0, 40:216, 0], 1)[0]
    assert 0.85 - 1e-3 <= slope <= 1.15 + 1e-3 and slope != 1
    same = RandomGeometric(max_degrees=0.0, min_crop=1.0).random_map(ramp, rng)["frames"]
    np.testing.assert_array_equal(same, ramp["frames"])
    moved = RandomGeometric().random_map(ramp, rng)["frames"]
    assert moved.shape == (256, 256, 3) and not np.array_equal(moved, ramp["frames"])


def test_bad_shards_are_counted_or_fatal(shards, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(shards, bad)
    first, second = sorted(bad.glob("*.tfrecord"))
    index = read_index(first)
    raw = bytearray(first.read_bytes())
    raw[int(index[5, 0]) + 40] ^= 0xFF  # corrupt record 5's data
    first.write_bytes(raw)
    second.write_bytes(second.read_bytes()[: int(read_index(second)[100, 0]) + 30])  # truncate inside record 100
    (bad / "empty.tfrecord").write_bytes(b"")
    (bad / "empty.tfrecord.index").write_bytes(b"")

    src = TFRecordSource(bad)
    assert len(src) == 120 + 100
    assert any("empty.tfrecord: empty shard" in p for p in src.problems)
    assert any(f"{second.name}: truncated" in p and "20 records left out" in p for p in src.problems)
    assert src[5] is None and src.corrupt_records == 1 and src[6] is not None
    batches = list(make_loader(bad, batch_size=1, seed=0, action_horizon=H, num_epochs=1))
    assert len(batches) == 219  # everything readable, nothing else

    with pytest.raises(RecordError, match=f"{second.name}: truncated"):
        TFRecordSource(bad, strict=True)
    second.unlink()
    with pytest.raises(RecordError, match="empty.tfrecord: empty shard"):
        TFRecordSource(bad, strict=True)
    os.remove(bad / "empty.tfrecord")
    strict = TFRecordSource(bad, strict=True)
    with pytest.raises(RecordError, match=rf"{first.name} @ offset {int(index[5, 0])}: data CRC mismatch"):
        strict[5]


def test_global_batch_on_a_mesh(shards):
    mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    host = next(make_loader(shards, batch_size=8, seed=0, action_horizon=H))
    g = global_batch(host, mesh)
    assert g["frames"].shape == (8, 256, 256, 3) and g["frames"].dtype == np.uint8
    assert len(g["actions"].addressable_shards) == 8 and g["actions"].addressable_shards[0].data.shape == (1, H, 25)
    np.testing.assert_array_equal(np.asarray(g["action_mask"]), host["action_mask"])
    g = global_batch(host, mesh, P("data"))
    assert isinstance(g["frames"].sharding, NamedSharding)
    assert g["frames"].sharding.spec == P("data") and g["frames"].addressable_shards[0].data.shape == (2, 256, 256, 3)


def test_device_augmentation_matches_the_host_one(shards):
    """The loader's device mode draws the host augmentation's numbers from the same record RNG; applied on the
    device they give the host's pixels up to interpolation rounding."""
    from nitrogen_jax.data.augment import RandomAugmentParams
    from nitrogen_jax.data.device_augment import augment_on_device

    plain = next(make_loader(shards, batch_size=4, seed=7, action_horizon=H, augment=False))
    dev = next(make_loader(shards, batch_size=4, seed=7, action_horizon=H, augment_on="device"))
    np.testing.assert_array_equal(dev["frames"], plain["frames"])  # frames left as decoded
    assert dev["augment"].shape == (4, 6) and dev["augment"].dtype == np.float32
    frames = plain["frames"]
    host, params = [], []
    for i, f in enumerate(frames):
        r_host, r_dev = np.random.default_rng(i), np.random.default_rng(i)
        host.append(
            RandomPhotometric().random_map(RandomGeometric().random_map({"frames": f}, r_host), r_host)["frames"]
        )
        params.append(RandomAugmentParams().random_map({"frames": f}, r_dev)["augment"])
    on_device = np.asarray(augment_on_device(jnp.asarray(frames), jnp.asarray(np.stack(params))))
    assert on_device.shape == frames.shape and on_device.dtype == np.uint8
    diff = np.abs(on_device.astype(int) - np.stack(host).astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4, (diff.mean(), np.percentile(diff, 99))
    assert np.abs(on_device.astype(int) - frames.astype(int)).mean() > 5  # and it did change the frames
    with pytest.raises(ValueError, match="augment_on must be 'host' or 'device', got 'gpu'"):
        make_loader(shards, batch_size=4, seed=0, action_horizon=H, augment_on="gpu")


def test_device_parameters_are_the_host_transforms_draws():
    from nitrogen_jax.data.augment import RandomAugmentParams, geometric_params

    frame = np.zeros((256, 200, 3), np.uint8)
    for seed in range(20):
        r_host, r_dev = np.random.default_rng(seed), np.random.default_rng(seed)
        theta, s, cx, cy = geometric_params(r_host, 256, 200, 5.0, 0.85)
        b, c = r_host.uniform(0.8, 1.2), r_host.uniform(0.85, 1.15)
        got = RandomAugmentParams().random_map({"frames": frame}, r_dev)["augment"]
        np.testing.assert_allclose(got, np.array([theta, s, cx, cy, b, c], np.float32), rtol=1e-6)


def test_training_batches_come_at_the_size_the_shards_were_written_at(tmp_path):
    """A small model trains on 64-pixel shards: the training source reads the size from manifest.json (it once
    asked every shard for 256x256 frames and failed on the first record)."""
    from nitrogen_jax.train.data import read_image_size, tfrecord_batches

    small = make_sample_shards(tmp_path, action_horizon=4, num_frames=60, games=("breakout",), image_size=64)
    assert read_image_size(small) == 64
    b = next(
        tfrecord_batches(small, augment=False)(batch_size=4, seed=0, action_horizon=4, shard_index=0, shard_count=1)
    )
    assert b["frames"].shape == (4, 64, 64, 3)
    (small / "manifest.json").write_text('{"config": {"image_size": "big"}}')
    with pytest.raises(ValueError, match="manifest.json: no integer config.image_size"):
        read_image_size(small)
