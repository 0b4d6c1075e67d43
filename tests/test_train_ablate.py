"""The chunk-length ablation end to end at a toy budget: training, smoothness, task success, table and plot."""

import json

import numpy as np
import pytest

from nitrogen_jax import get_layout
from nitrogen_jax.cli import main as cli_main
from nitrogen_jax.sim_bridge.evaluate import wilson
from nitrogen_jax.train import ablate_chunk
from tests.train_support import session_shards

pytestmark = pytest.mark.slow  # end-to-end training runs


def test_smoothness_counts_only_valid_consecutive_steps():
    layout = get_layout("seed")
    chunk = np.zeros((1, 4, layout.dim), np.float32)
    chunk[0, 1, 16] = 1.0  # left stick x jumps at step 1 ...
    chunk[0, 3, 0] = 1.0  # ... and a button flips at step 3, which is padding
    valid = np.array([[True, True, True, False]])
    stick, flips = ablate_chunk.smoothness(chunk, valid, layout)
    assert stick == np.mean([[1, 0, 0, 0], [1, 0, 0, 0]]) and flips == 0.0


def test_ablation_writes_table_json_and_plot_with_task_success(tmp_path_factory, tmp_path):
    shards = session_shards(tmp_path_factory)
    assert (
        cli_main(
            [
                "ablate-chunk",
                "--out",
                str(tmp_path),
                "--dataset",
                str(shards),
                "--horizons",
                "4",
                "8",
                "--num-steps",
                "3",
                "--batch-size",
                "8",
                "--eval-batches",
                "1",
                "--tasks",
                "breakout_break_brick",
                "--rollouts",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "ablate_chunk.json").read_text())
    assert [r["horizon"] for r in rows] == [4, 8]
    for r in rows:
        # one rollout: the reported interval must be the Wilson interval of that one outcome
        expected = wilson(int(r["task_success"]), 1)
        assert np.isfinite(r["val_loss"]) and r["task_success"] == expected.rate
        assert (r["task_success_low"], r["task_success_high"]) == pytest.approx((expected.low, expected.high))
    assert "task_success" in (tmp_path / "ablate_chunk.md").read_text()
    assert (tmp_path / "ablate_chunk.png").stat().st_size > 10_000
