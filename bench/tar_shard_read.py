"""Reading a released tar shard: per-chunk re-open (find_chunks + read_chunk, the old path) against one streaming
pass (read_tar_chunks). Prints a table; the shard is generated (random labels in the public layout).

    python bench/tar_shard_read.py --chunks 40 160
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.data.layout import find_chunks, read_chunk, read_tar_chunks, write_chunks


def make_shard(folder: Path, num_chunks: int) -> Path:
    rng = np.random.default_rng(0)
    per_video = 20
    for v in range(0, num_chunks, per_video):
        n = min(per_video, num_chunks - v) * 1200
        pad = Gamepad(rng.random((n, 17)) < 0.3, rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, (n, 2)))
        write_chunks(folder / "tree", f"video{v:05d}", pad)
    shard = folder / f"SHARD_{num_chunks:04d}.tar.gz"
    with tarfile.open(shard, "w:gz") as tar:
        tar.add(folder / "tree", arcname="SHARD")
    return shard


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, nargs="+", default=[40, 160])
    args = ap.parse_args()
    print("| chunks | shard MB | per-chunk re-open s | ms/chunk | one streaming pass s | ms/chunk | speed-up |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.chunks:
            shard = make_shard(Path(tmp) / str(n), n)
            t0 = time.perf_counter()
            old = [read_chunk(r) for r in find_chunks(shard)]
            t_old = time.perf_counter() - t0
            t0 = time.perf_counter()
            with open(shard, "rb") as f:
                new = [got for _, got in read_tar_chunks(f, str(shard))]
            t_new = time.perf_counter() - t0
            assert len(old) == len(new) == n
            mb = shard.stat().st_size / 2**20
            print(
                f"| {n} | {mb:.1f} | {t_old:.2f} | {1e3 * t_old / n:.1f} | {t_new:.2f} | {1e3 * t_new / n:.1f} "
                f"| {t_old / t_new:.1f}x |"
            )


if __name__ == "__main__":
    main()
