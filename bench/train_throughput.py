"""Training throughput: samples/s, step time, FLOP/s, MFU (on accelerators) and memory per device, per preset and mesh.

    python bench/train_throughput.py                                   # CPU: tiny and mid on 1 and 8 (simulated) devices
    python bench/train_throughput.py --presets nitrogen-500m --meshes 1,1,1 --batch-size 32 --compute-dtype bfloat16

Batches come from memory (no I/O), so this measures the train step alone. FLOPs per step are
`nitrogen_jax.train.flops.train_flops_per_sample(config) * batch` (matmuls only, 3x forward; see that module).
Memory per device is XLA's compiled-memory analysis: arguments (state + batch) + temporaries.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from nitrogen_jax.config import TransformerConfig, VisionConfig, get_config  # noqa: E402
from nitrogen_jax.model import (  # noqa: E402
    NitroGenModel,  # noqa: E402
    abstract_params,
    count_parameters,
)
from nitrogen_jax.train.config import TrainConfig  # noqa: E402
from nitrogen_jax.train.flops import peak_flops, train_flops_per_sample  # noqa: E402
from nitrogen_jax.train.optimizer import learning_rate_schedule, make_optimizer, trainable_mask  # noqa: E402
from nitrogen_jax.train.sharding import make_mesh, parse_mesh_shape, place_batch  # noqa: E402
from nitrogen_jax.train.state import init_train_state  # noqa: E402
from nitrogen_jax.train.step import make_train_step  # noqa: E402

# A mid-size model for CPU runs: a 6-block ViT of width 192, 2 mixer blocks, 4 DiT blocks of width 256 (8M params).
MID = get_config("tiny").replace(
    vision=VisionConfig(width=192, depth=6, num_heads=3, mlp_dim=768),
    mixer=TransformerConfig(num_layers=2, num_heads=3, head_dim=64),
    dit=TransformerConfig(num_layers=4, num_heads=4, head_dim=64, dropout=0.2),
    hidden_size=256,
    dit_output_dim=256,
)


def config_for(name: str, compute_dtype: str | None):
    cfg = MID if name == "mid" else get_config(name)
    return cfg.replace(compute_dtype=compute_dtype) if compute_dtype else cfg


def measure(name: str, mesh_shape, batch_size: int, steps: int, compute_dtype: str | None, remat: bool) -> dict:
    cfg = config_for(name, compute_dtype)
    n_dev = int(np.prod([d for d in mesh_shape if d > 0])) if -1 not in mesh_shape else len(jax.devices())
    mesh = make_mesh(mesh_shape, jax.devices()[:n_dev])
    tc = TrainConfig(
        batch_size=batch_size, warmup_steps=10, num_steps=1000, mesh_shape=tuple(mesh.shape.values()), remat=remat
    )
    model = NitroGenModel(cfg, remat=remat)
    trainable = trainable_mask(abstract_params(cfg), ())
    tx = make_optimizer(tc, trainable)
    state, shardings = init_train_state(model, tx, mesh, 0, tc.fsdp_min_size)
    step = make_train_step(model, tx, tc, trainable, learning_rate_schedule(tc), mesh, shardings)
    rs = np.random.RandomState(0)
    h, a = cfg.action_horizon, cfg.action_dim
    batch = place_batch(
        {
            "frames": rs.randint(0, 256, (batch_size, 256, 256, 3), dtype=np.uint8),
            "actions": rs.rand(batch_size, h, a).astype(np.float32),
            "action_mask": np.ones((batch_size, h, a), np.float32),
        },
        mesh,
    )
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    for _ in range(2):  # warm-up
        state, m = step(state, batch)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = step(state, batch)
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t0) / steps
    flops = train_flops_per_sample(cfg) * batch_size
    peak = peak_flops(jax.devices()[0])
    return {
        "preset": name,
        "params_M": count_parameters(cfg)["total"] / 1e6,
        "mesh": "x".join(map(str, mesh.shape.values())),
        "batch": batch_size,
        "dtype": cfg.compute_dtype,
        "step_ms": 1e3 * dt,
        "samples_s": batch_size / dt,
        "gflop_step": flops / 1e9,
        "tflops_s": flops / dt / 1e12,
        "mfu": f"{flops / dt / (peak * mesh.size):.1%}" if peak else "n/a",
        "mem_dev_MiB": (mem.argument_size_in_bytes + mem.temp_size_in_bytes) / 2**20 if mem else float("nan"),
        "compile_s": compile_s,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="tiny,mid", help="comma-separated: tiny, mid, seed, nitrogen-500m")
    p.add_argument("--meshes", default="1,1,1;8,1,1;1,8,1", help="semicolon-separated data,fsdp,tensor shapes")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default=None)
    p.add_argument("--remat", action="store_true")
    args = p.parse_args()
    dev = jax.devices()[0]
    print(
        f"devices: {len(jax.devices())} x {dev.device_kind} ({dev.platform}); peak bf16 "
        f"{peak_flops(dev) / 1e12 if peak_flops(dev) else 'unknown'} TFLOP/s per device"
    )
    rows = [
        measure(name, parse_mesh_shape(m), args.batch_size, args.steps, args.compute_dtype, args.remat)
        for name in args.presets.split(",")
        for m in args.meshes.split(";")
    ]
    cols = list(rows[0])

    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(fmt(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=False)))
    for r in rows:
        print("  ".join(fmt(r[c]).rjust(w) for c, w in zip(cols, widths, strict=False)))


if __name__ == "__main__":
    main()
