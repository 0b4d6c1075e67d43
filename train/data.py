"""Where training batches come from: the data layer's TFRecord loader (a folder or a bucket), or arrays in memory.

Both give Grain iterators (`get_state`/`set_state`), so the checkpoint holds the data position and a resumed run
sees exactly the batches an uninterrupted one would. A `BatchSource` is called once per process with that
process's share of the global batch. A dataset's alignment settings (which label row follows a frame) come from
its `manifest.json`; `alignment_mismatch` compares them with a policy's config before fine-tuning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from nitrogen_jax.config import NitroGenConfig
from nitrogen_jax.data import storage

MANIFEST = "manifest.json"  # written by data/pipeline.py
# PreprocessConfig field -> NitroGenConfig field, for the settings that decide which label row follows a frame.
ALIGNMENT_FIELDS = {
    "action_shift": "action_shift",
    "action_fps": "action_fps",
    "action_horizon": "action_horizon",
    "layout": "action_layout",
}


class BatchSource(Protocol):
    def __call__(
        self, *, batch_size: int, seed: int, action_horizon: int, shard_index: int, shard_count: int
    ) -> Iterator[dict]: ...


def dataset_location(dataset: str | Path) -> str:
    """The dataset as a path or URL string. A URL that went through `pathlib.Path` (the CLI's `--dataset` type)
    lost a slash ('s3:/bucket/x'): it is put back."""
    s = str(dataset)
    return re.sub(r"^([a-z][a-z0-9+.-]*):/(?!/)", r"\1://", s)


def check_dataset_dir(dataset: str | Path) -> str:
    location = dataset_location(dataset)
    if not storage.is_dir(location):
        raise FileNotFoundError(
            f"dataset directory {location} does not exist (expected TFRecord shards from "
            f"`nitrogen-jax preprocess`, or make a sample with nitrogen_jax.data.sample_data)"
        )
    if not storage.list_files(location, ".tfrecord"):
        raise FileNotFoundError(f"dataset directory {location} holds no *.tfrecord shards")
    return location


def dataset_size(dataset: str | Path) -> int:
    from nitrogen_jax.data.loader import TFRecordSource

    return len(TFRecordSource(check_dataset_dir(dataset)))


def read_manifest_config(dataset: str | Path) -> dict[str, Any] | None:
    """The PreprocessConfig recorded in the dataset's manifest.json, or None when the folder has no manifest
    (shards from elsewhere)."""
    path = storage.join(dataset_location(dataset), MANIFEST)
    if not storage.exists(path):
        return None
    try:
        config = json.loads(storage.read_bytes(path))["config"]
        if not isinstance(config, dict):
            raise TypeError(f"config is a {type(config).__name__}")
        return config
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a preprocessing manifest with a 'config' object ({e})") from None


def read_alignment(dataset: str | Path) -> dict[str, Any] | None:
    """The alignment settings recorded in the manifest (keyed by PreprocessConfig field), or None without one."""
    config = read_manifest_config(dataset)
    return None if config is None else {k: config[k] for k in ALIGNMENT_FIELDS if k in config}


def read_image_size(dataset: str | Path) -> int | None:
    """The frame size the shards were written at (the manifest's `image_size`), or None without a manifest."""
    config = read_manifest_config(dataset)
    if config is None:
        return None
    try:
        return int(config["image_size"])
    except (ValueError, KeyError, TypeError) as e:
        path = storage.join(dataset_location(dataset), MANIFEST)
        raise ValueError(f"{path}: no integer config.image_size ({e})") from None


def alignment_mismatch(alignment: dict[str, Any], policy: NitroGenConfig) -> list[str]:
    """'field: dataset X != policy Y' for each alignment setting the dataset records and the policy disagrees on
    (action_horizon only when the data holds fewer steps than the policy predicts)."""
    out = []
    for data_field, policy_field in ALIGNMENT_FIELDS.items():
        if data_field not in alignment:
            continue
        ours, theirs = alignment[data_field], getattr(policy, policy_field)
        differs = ours < theirs if data_field == "action_horizon" else ours != theirs
        if differs:
            out.append(f"{data_field}: dataset {ours!r} != policy {theirs!r}")
    return out


class TFRecordBatches:
    """A `BatchSource` over a folder (or bucket URL) of shards, which also knows where they are."""

    def __init__(
        self,
        dataset: str | Path,
        *,
        augment: bool = True,
        num_workers: int = 0,
        shuffle: bool = True,
        num_epochs: int | None = None,
    ):
        self.dataset = check_dataset_dir(dataset)
        self.augment, self.num_workers, self.shuffle, self.num_epochs = augment, num_workers, shuffle, num_epochs
        # Shards are written at one frame size (PreprocessConfig.image_size, 256 by default); the loader checks it.
        self.image_size = read_image_size(self.dataset) or 256

    def __call__(
        self, *, batch_size: int, seed: int, action_horizon: int, shard_index: int, shard_count: int
    ) -> Iterator[dict]:
        from nitrogen_jax.data.loader import make_loader

        return make_loader(
            self.dataset,
            batch_size=batch_size,
            seed=seed,
            action_horizon=action_horizon,
            shard_index=shard_index,
            shard_count=shard_count,
            augment=self.augment,
            num_workers=self.num_workers,
            shuffle=self.shuffle,
            num_epochs=self.num_epochs,
            augment_on="device",  # the train step applies the augmentation: the loader's core only decodes
            image_size=self.image_size,
        )

    def alignment(self) -> dict[str, Any] | None:
        return read_alignment(self.dataset)


def tfrecord_batches(
    dataset: str | Path,
    *,
    augment: bool = True,
    num_workers: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
) -> TFRecordBatches:
    """Batches from the data layer's loader over a folder or bucket of shards."""
    return TFRecordBatches(dataset, augment=augment, num_workers=num_workers, shuffle=shuffle, num_epochs=num_epochs)


def take_batches(source: BatchSource, count: int, **kwargs) -> list[dict]:
    """The first `count` batches of a source (a fixed validation set)."""
    it = source(**kwargs)
    return [next(it) for _ in range(count)]
