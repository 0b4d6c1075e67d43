"""Training: pretrain and fine-tune NitroGen policies under jit with mesh sharding, exact resume and multi-host.

The pieces, one idea per file:
- `config.TrainConfig`: optimiser, schedule, batch, mesh and checkpoint settings (saved with every checkpoint).
- `optimizer`: AdamW with warm-up + cosine schedule, clipping, freezing by parameter path.
- `sharding`: the (data, fsdp, tensor) mesh and the FSDP rule for parameters and optimiser state.
- `state.TrainState` and its sharded initialisation (under `jax.eval_shape`, so nothing is built unsharded).
- `step.make_train_step`: the one pure, jitted `train_step(state, batch) -> (state, metrics)`.
- `checkpoint`: orbax CheckpointManager holding state, data-iterator state and configs; EMA export for serving.
- `metrics`: TensorBoard + JSONL writer, throughput and MFU; `flops`: the FLOP count MFU uses.
- `loop.train`: the loop that ties them together (progress bar, NaN guard, preemption, resume).
- `cli`: `nitrogen-jax train` and `nitrogen-jax finetune`.
"""

from nitrogen_jax.train.config import TrainConfig
from nitrogen_jax.train.state import TrainState

__all__ = ["TrainConfig", "TrainState"]
