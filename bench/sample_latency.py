"""Compile time and latency of `Policy.sample` per preset, dtype and batch size, beside a release-style loop.

The release-style loop is what the public server does, written with our modules: encode the frame once, then a
Python loop of Euler steps, each a separate (jitted) call that recomputes the VL mixer and the cross-attention
K/V. Both run in the same process on the same params, so their ratio is a like-for-like measure.

    python bench/sample_latency.py                          # tiny on this machine
    python bench/sample_latency.py --presets nitrogen-500m --dtypes bfloat16 --batch-sizes 1   # on a GPU
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import numpy as np

from nitrogen_jax import Policy
from nitrogen_jax.flow import euler_buckets
from nitrogen_jax.model import NitroGenModel, normalize_frames


def release_style_sampler(policy: Policy, num_steps: int):
    model, c = policy.model, policy.config
    vision = jax.jit(lambda p, f: model.apply({"params": p}, f, method=_vision_tokens))
    step = jax.jit(
        lambda p, tokens, x, b: x + model.apply({"params": p}, tokens, x, b, method=_mix_and_velocity) / num_steps
    )

    def sample(frames, noise):
        tokens = vision(policy.params, frames)
        x = noise
        for bucket in euler_buckets(num_steps, c.num_timestep_buckets):
            x = step(policy.params, tokens, x, np.full((x.shape[0],), bucket, np.int32))
        return x

    return sample


def _vision_tokens(m: NitroGenModel, frames):
    return m.vision(normalize_frames(frames))


def _mix_and_velocity(m: NitroGenModel, tokens, x, bucket):
    pad = m.config.context_len - tokens.shape[1]
    if pad:
        tokens = jax.numpy.pad(tokens, ((0, 0), (pad, 0), (0, 0)))
    return m.velocity(x, bucket, context=m.mixer(tokens))


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny")
    ap.add_argument("--dtypes", default="float32")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--steps", type=int, default=None, help="Euler steps (default: each preset's)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-baseline", action="store_true", help="skip the release-style loop")
    args = ap.parse_args()

    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}")
    header = ("preset", "dtype", "batch", "steps", "compile s", "ms/chunk", "p90 ms", "release-style ms", "speed-up")
    rows = []
    for preset in args.presets.split(","):
        base = Policy.init(preset, seed=0)
        for dtype in args.dtypes.split(","):
            policy = base.with_compute_dtype(dtype)
            steps = args.steps or policy.config.num_steps
            for batch in map(int, args.batch_sizes.split(",")):
                rng = np.random.default_rng(0)
                frames = jax.device_put(rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8))
                noise = jax.device_put(
                    rng.normal(size=(batch, policy.config.action_horizon, policy.config.action_dim)).astype(np.float32)
                )
                first, times = timed(
                    functools.partial(policy.sample, frames, noise=noise, num_steps=steps), args.repeats
                )
                ms = 1e3 * statistics.median(times)
                p90 = 1e3 * float(np.percentile(times, 90))
                compile_s = first - statistics.median(times)
                baseline_ms, speedup = "-", "-"
                if not args.no_baseline:
                    slow = release_style_sampler(policy, steps)
                    _, slow_times = timed(functools.partial(slow, frames, noise), max(3, args.repeats // 4))
                    b_ms = 1e3 * statistics.median(slow_times)
                    baseline_ms, speedup = f"{b_ms:.2f}", f"{b_ms / ms:.2f}x"
                rows.append(
                    (preset, dtype, batch, steps, f"{compile_s:.2f}", f"{ms:.2f}", f"{p90:.2f}", baseline_ms, speedup)
                )
                print("  ".join(map(str, rows[-1])), flush=True)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = lambda r: "| " + " | ".join(str(x).rjust(w) for x, w in zip(r, widths, strict=False)) + " |"  # noqa: E731
    print("\n" + line(header) + "\n|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


if __name__ == "__main__":
    main()
