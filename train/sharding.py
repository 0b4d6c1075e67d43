"""The device mesh (data, fsdp, tensor) and where every array of a training run lives on it.

- Batch: the leading axis is split over data x fsdp (every device sees different samples; FSDP is data
  parallelism with sharded parameters).
- Parameters and optimiser state (FSDP): each array of at least `min_size` elements is split along its largest
  axis divisible by the fsdp size; with a tensor axis > 1 the next largest divisible axis is split over it.
  Smaller arrays (biases, norms) are replicated. The rule looks at shapes only, so Adam's moments follow their
  parameters.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nitrogen_jax.data.device import global_batch

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def parse_mesh_shape(text: str) -> tuple[int, int, int]:
    """'8' -> (8, 1, 1); '2,4' -> (2, 4, 1); '-1,2,1' -> (-1, 2, 1)."""
    try:
        dims = [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"mesh shape must be comma-separated integers data[,fsdp[,tensor]], got {text!r}") from None
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"mesh shape has 1 to 3 axes (data, fsdp, tensor), got {text!r}")
    dims += [1] * (3 - len(dims))
    return dims[0], dims[1], dims[2]


def make_mesh(shape=(-1, 1, 1), devices=None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all, every process); one -1 takes what is left."""
    devices = list(jax.devices() if devices is None else devices)
    shape = list(shape) + [1] * (3 - len(shape))
    if shape.count(-1) > 1 or any(d == 0 or d < -1 for d in shape):
        raise ValueError(f"mesh shape {tuple(shape)}: each axis is a positive size, at most one may be -1")
    if -1 in shape:
        rest = math.prod(d for d in shape if d != -1)
        if len(devices) % rest:
            raise ValueError(f"mesh shape {tuple(shape)}: {len(devices)} devices are not divisible by {rest}")
        shape[shape.index(-1)] = len(devices) // rest
    if math.prod(shape) != len(devices):
        hint = ""
        if jax.default_backend() == "cpu":
            hint = (
                f" (to try a mesh on CPU, simulate devices: "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={math.prod(shape)})"
            )
        raise ValueError(
            f"mesh shape {tuple(shape)} needs {math.prod(shape)} devices, {len(devices)} are available{hint}"
        )
    return jax.make_mesh(tuple(shape), AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3, devices=devices)


def data_parallel_size(mesh: Mesh) -> int:
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def fsdp_spec(shape, mesh: Mesh, min_size: int) -> P:
    """Split the largest axis divisible by the fsdp size over fsdp (and the next one over tensor)."""
    spec: list[str | None] = [None] * len(shape)
    if math.prod(shape) < min_size:
        return P(*spec)
    for axis in ("fsdp", "tensor"):
        n = mesh.shape[axis]
        if n == 1:
            continue
        free = [i for i in np.argsort(shape)[::-1] if spec[i] is None and shape[i] % n == 0]
        if free:
            spec[free[0]] = axis
    return P(*spec)


def fsdp_shardings(abstract_tree, mesh: Mesh, min_size: int = 2**14):
    """NamedSharding per leaf of a pytree of arrays / ShapeDtypeStructs by the FSDP rule."""
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, mesh, min_size)), abstract_tree)


def check_batch_size(batch_size: int, mesh: Mesh, grad_accum_steps: int = 1) -> None:
    n = data_parallel_size(mesh)
    micro = batch_size // grad_accum_steps
    if batch_size % grad_accum_steps or micro % n:
        raise ValueError(
            f"batch size {batch_size} with {grad_accum_steps} accumulation step(s) gives micro-batches of "
            f"{batch_size / grad_accum_steps:g}, which must be divisible by the data-parallel size "
            f"data x fsdp = {mesh.shape['data']} x {mesh.shape['fsdp']} = {n}"
        )
    if batch_size % jax.process_count():
        raise ValueError(f"batch size {batch_size} is not divisible by the {jax.process_count()} processes")


def place_batch(local_batch: dict, mesh: Mesh) -> dict:
    """This process's rows of the batch (host numpy) -> global jax.Arrays split over data x fsdp."""
    return global_batch(local_batch, mesh, batch_sharding(mesh).spec)
