"""Where training batches come from: the data layer's TFRecord loader, or arrays held in memory.

Both give Grain iterators (`get_state`/`set_state`), so the checkpoint holds the data position and a resumed run
sees exactly the batches an uninterrupted one would. A `BatchSource` is called once per process with that
process's share of the global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class BatchSource(Protocol):
    def __call__(
        self, *, batch_size: int, seed: int, action_horizon: int, shard_index: int, shard_count: int
    ) -> Iterator[dict]: ...


def check_dataset_dir(dataset: str | Path) -> Path:
    path = Path(dataset)
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset directory {path} does not exist (expected TFRecord shards from "
            f"`nitrogen-jax preprocess`, or make a sample with nitrogen_jax.data.sample_data)"
        )
    if not any(path.glob("*.tfrecord")):
        raise FileNotFoundError(f"dataset directory {path} holds no *.tfrecord shards")
    return path


def dataset_size(dataset: str | Path) -> int:
    from nitrogen_jax.data.loader import TFRecordSource

    return len(TFRecordSource(check_dataset_dir(dataset)))


def tfrecord_batches(
    dataset: str | Path,
    *,
    augment: bool = True,
    num_workers: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
) -> BatchSource:
    """Batches from the data layer's loader over a folder of shards."""
    from nitrogen_jax.data.loader import make_loader

    path = check_dataset_dir(dataset)

    def source(*, batch_size, seed, action_horizon, shard_index, shard_count):
        return make_loader(
            path,
            batch_size=batch_size,
            seed=seed,
            action_horizon=action_horizon,
            shard_index=shard_index,
            shard_count=shard_count,
            augment=augment,
            num_workers=num_workers,
            shuffle=shuffle,
            num_epochs=num_epochs,
        )

    return source


def take_batches(source: BatchSource, count: int, **kwargs) -> list[dict]:
    """The first `count` batches of a source (a fixed validation set)."""
    it = source(**kwargs)
    return [next(it) for _ in range(count)]
