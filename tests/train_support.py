"""Shared by the training tests that run subprocesses: one sample dataset and one JAX compilation cache per test
session, so runs that compile the same train step (same config, same devices) compile it once."""

import os
from pathlib import Path

from nitrogen_jax.data.sample_data import make_sample_shards


def session_shards(tmp_path_factory) -> Path:
    """The Atari sample as shards (built once per session, reused by make_sample_shards' own key check)."""
    return make_sample_shards(tmp_path_factory.getbasetemp() / "train_sample", action_horizon=18)


def subprocess_env(tmp_path_factory, devices: int) -> dict:
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "train_jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def small_run(command: str, dataset, out, *, steps: int, save_every: int, warmup: int, mesh=(1, 1, 1)) -> list[str]:
    """The CLI arguments of the tests' small training runs: batch 4, lr 1e-3, no progress bar."""
    return [
        command,
        *("--dataset", str(dataset), "--out", str(out), "--num-steps", str(steps), "--batch-size", "4"),
        *("--save-every", str(save_every), "--warmup-steps", str(warmup), "--learning-rate", "1e-3"),
        *("--mesh-shape", *map(str, mesh), "--no-progress"),
    ]
