"""Frames per second of the overlay parser (`OverlayParser.parse`, jitted, batched) against the extractor's budget.

The extractor must read >= 60 video frames/s on 2 CPU cores; this measures the parser alone, per batch size, with
rectified crops already in memory, and the float32 vs shipped-weights parameter count beside it.

    XLA_FLAGS=--xla_force_host_platform_device_count=1 taskset -c 0,1 python bench/overlay_parser_throughput.py
"""

from __future__ import annotations

import argparse
import math
import os
import time

import jax
import numpy as np

from nitrogen_jax.data.overlay.parser import PARSER_INPUT_HW, OverlayParser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--frames", type=int, default=512, help="frames parsed per measurement")
    args = ap.parse_args()

    parser = OverlayParser.load()
    n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(parser.params))
    cores = len(os.sched_getaffinity(0))
    crops = np.random.default_rng(0).integers(0, 256, (args.frames, *PARSER_INPUT_HW, 3), dtype=np.uint8)
    print(f"parser: {n_params:,} params, input {PARSER_INPUT_HW}, {cores} CPU cores visible, {jax.devices()[0]}")
    print("| batch | compile s | frames/s | x real time (60 fps) |")
    print("|---|---|---|---|")
    for bs in args.batch_sizes:
        p = OverlayParser(parser.config, parser.params, batch_size=bs)
        t0 = time.perf_counter()
        p.parse(crops[:bs], crops[:bs], crops[0])
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        p.parse(crops[:-1], crops[1:], crops[0])
        fps = (len(crops) - 1) / (time.perf_counter() - t0)
        print(f"| {bs} | {compile_s:.1f} | {fps:.0f} | {fps / 60:.1f} |")


if __name__ == "__main__":
    main()
