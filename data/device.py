"""Placing each process's host batch on the mesh as one global `jax.Array` per key.

On multi-host training every process loads its own share (`make_loader(shard_index=jax.process_index(),
shard_count=jax.process_count())`); `global_batch` stitches the shares into arrays of global batch
`batch_size * process_count`, split over the mesh axes named in the partition spec.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def global_batch(batch: dict[str, np.ndarray], mesh: Mesh, spec: PartitionSpec | None = None) -> dict[str, jax.Array]:
    """Host batch (this process's rows) -> global arrays sharded by `spec` (default: batch dim over all mesh axes)."""
    spec = PartitionSpec(mesh.axis_names) if spec is None else spec
    sharding = NamedSharding(mesh, spec)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}
