"""The NaN/Inf guard stops the run at the first bad step, names it, and leaves no checkpoint of it."""

import grain
import jax
import numpy as np
import pytest

from nitrogen_jax.config import get_config
from nitrogen_jax.train.checkpoint import CheckpointStore
from nitrogen_jax.train.config import TrainConfig
from nitrogen_jax.train.loop import NonFiniteLoss, train
from nitrogen_jax.train.metrics import read_jsonl


def test_non_finite_loss_stops_and_names_the_step(tmp_path):
    cfg = get_config("tiny")
    rs = np.random.RandomState(0)
    n, h, a = 8, cfg.action_horizon, cfg.action_dim
    examples: dict[str, np.ndarray] = {
        "frames": rs.randint(0, 256, (n, 256, 256, 3), dtype=np.uint8),
        "actions": rs.rand(n, h, a).astype(np.float32),
        "action_mask": np.ones((n, h, a), np.float32),
    }

    def poisoned(*, batch_size, seed, action_horizon, shard_index, shard_count):
        """Grain batches of the examples, with a NaN label in the 4th (a corrupt record that slipped through)."""

        def batch(i):
            rows = (i * batch_size + np.arange(batch_size)) % n
            b = {k: v[rows] for k, v in examples.items()}
            if i == 3:
                b["actions"][1, 2, 3] = np.nan
            return b

        return iter(grain.MapDataset.range(1000).map(batch).to_iter_dataset())

    tc = TrainConfig(num_steps=10, batch_size=4, warmup_steps=1, save_every=2, mesh_shape=(1, 1, 1))
    with pytest.raises(NonFiniteLoss, match=r"at step 4 .*loss=nan.*Last checkpoint: step 2") as e:
        train(cfg, tc, poisoned, tmp_path, devices=jax.devices()[:1], progress=False)
    assert e.value.step == 4
    assert [r["step"] for r in read_jsonl(tmp_path / "logs" / "metrics.jsonl")] == [1, 2, 3]
    assert CheckpointStore(tmp_path / "checkpoints").latest_step() == 2
    assert not (tmp_path / "policy").exists()
