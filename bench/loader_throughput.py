"""Loader and preprocessing throughput on this machine's CPU, printed as a table.

Loader rows: samples/s of wall time and per CPU core (samples per CPU-second of this process), for each stage
stacked on the previous one at 256x256: record read (pread + CRC), + Example parse + JPEG decode (cv2 and the
loader's decoder), + augment on the host, make_loader in-process with the augmentation on the host and as the
training path runs it (parameters drawn here, pixels on the accelerator), and make_loader with worker processes
(wall only: the workers' CPU time is not visible to this process). The ratio lines compare make_loader with bare
decoding of the same records, measured side by side in this run. Preprocessing rows (unless --loader-only):
frames/s of the per-video work alone and of the whole Beam pipeline on the DirectRunner.

    .venv/bin/python bench/loader_throughput.py [--frames 600] [--batch 32] [--workers 2] [--loader-only]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_seconds() -> float:
    """CPU time of this process, all threads (time.process_time: finer than os.times' 10 ms ticks)."""
    return time.process_time()


def measure(fn, n_samples: int) -> tuple[float, float]:
    """(samples/s wall, samples per CPU-second) of fn(), which processes n_samples."""
    w0, c0 = time.perf_counter(), cpu_seconds()
    fn()
    wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
    return n_samples / wall, n_samples / max(cpu, 1e-9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=600, help="labelled frames per game in the sample dataset")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=60, help="batches timed per loader row")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--loader-only", action="store_true", help="skip the preprocessing rows")
    p.add_argument("--repeats", type=int, default=3, help="timings per row; the best is kept")
    args = p.parse_args()

    from absl import flags

    flags.FLAGS.mark_as_parsed()
    import cv2

    from nitrogen_jax.data.augment import RandomGeometric, RandomPhotometric
    from nitrogen_jax.data.example import decode_sample
    from nitrogen_jax.data.layout import find_chunks, read_chunk
    from nitrogen_jax.data.loader import DecodeSample, TFRecordSource, make_loader
    from nitrogen_jax.data.pipeline import run_preprocess, video_map
    from nitrogen_jax.data.preprocess import LabelChunk, PreprocessConfig, video_samples
    from nitrogen_jax.data.report import Report
    from nitrogen_jax.data.sample_data import make_sample_dataset
    from nitrogen_jax.data.video import video_fps

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ds = make_sample_dataset(tmp, num_frames=args.frames)
        cfg = PreprocessConfig()
        n_frames = args.frames * len(ds.video_ids)

        if not args.loader_only:
            vmap = video_map(ds.videos_dir)
            chunks = {}
            for ref in find_chunks(ds.labels_dir):
                pad, meta = read_chunk(ref)
                chunks.setdefault(ref.video_id, []).append(LabelChunk(ref.name, ref.index, pad, meta))

            def per_video():
                for vid, cs in chunks.items():
                    for _ in video_samples(vid, cs, vmap[vid], video_fps(vmap[vid]), cfg, Report()):
                        pass

            rows.append(
                (
                    "preprocess: decode video, crop/mask/resize, JPEG, Example (per-video work)",
                    *measure(per_video, n_frames),
                )
            )
        shards = Path(tmp) / "shards"
        w0 = time.perf_counter()
        run_preprocess([ds.labels_dir], ds.videos_dir, shards, cfg)
        if not args.loader_only:
            rows.append(
                (
                    "preprocess: whole Beam pipeline, DirectRunner (wall, incl. startup)",
                    n_frames / (time.perf_counter() - w0),
                    float("nan"),
                )
            )
        src = TFRecordSource(shards)
        n = len(src)
        records = [src[i] for i in range(n)]
        decode = DecodeSample(18)
        geo, photo = RandomGeometric(), RandomPhotometric()
        rng = np.random.default_rng(0)
        decoded = [decode.map(r) for r in records]

        def best(fn, n_samples: int) -> tuple[float, float]:
            runs = [measure(fn, n_samples) for _ in range(args.repeats)]
            return max(r[0] for r in runs), max(r[1] for r in runs)

        def cv2_decode(record: bytes):
            s = decode_sample(record)
            return (
                cv2.imdecode(np.frombuffer(s.jpeg, np.uint8), cv2.IMREAD_COLOR_RGB),
                s.actions[:18],
                s.action_mask[:18],
            )

        cv2.setNumThreads(1)
        rows.append(("loader: read record (pread + CRC32C)", *best(lambda: [src[i] for i in range(n)], n)))
        passes = max(1, args.batches * args.batch // n)  # as many samples as a make_loader row, for the same resolution
        many = records * passes
        rows.append(
            ("bare decode: parse Example + cv2.imdecode", *best(lambda: [cv2_decode(r) for r in many], len(many)))
        )
        bare = best(lambda: [decode.map(r) for r in many], len(many))
        rows.append(("bare decode: parse Example + the loader's JPEG decoder", *bare))
        rows.append(
            (
                "host augment only (rotate+crop warp, brightness/contrast LUT)",
                *best(lambda: [photo.random_map(geo.random_map(d, rng), rng) for d in decoded], n),
            )
        )

        def loader_rows(workers: int, augment_on: str = "device"):
            it = make_loader(
                shards, batch_size=args.batch, seed=0, action_horizon=18, num_workers=workers, augment_on=augment_on
            )
            for _ in range(5):  # warm up (worker start, prefetch)
                next(it)
            return it

        timed = args.batches * args.batch
        it = loader_rows(0, "host")
        host_loader = best(lambda: [next(it) for _ in range(args.batches)], timed)
        rows.append((f"make_loader, batch {args.batch}, in-process, augment on the host", *host_loader))
        it = loader_rows(0, "device")
        train_loader = best(lambda: [next(it) for _ in range(args.batches)], timed)
        rows.append((f"make_loader, batch {args.batch}, in-process, training path (augment on device)", *train_loader))
        if args.workers:
            it = loader_rows(args.workers)
            speed, _ = measure(lambda: [next(it) for _ in range(args.batches)], timed)
            rows.append(
                (
                    f"make_loader, batch {args.batch}, {args.workers} worker processes (wall)",
                    speed,
                    float("nan"),
                )
            )
            del it

    width = max(len(r[0]) for r in rows)
    print(
        f"\nCPU: {os.cpu_count()} cores visible; sample dataset {n_frames} frames at 60 fps, shards of 256x256 JPEG q95"
    )
    print(f"{'stage':<{width}}  {'samples/s':>10}  {'per core':>10}")
    print("-" * (width + 24))
    for name, wall, per_core in rows:
        print(f"{name:<{width}}  {wall:>10.0f}  {'' if np.isnan(per_core) else f'{per_core:.0f}':>10}")
    for name, loader in (("training path", train_loader), ("host augment", host_loader)):
        print(
            f"ratio per core, make_loader ({name}) / bare decode: {loader[1] / bare[1]:.2f} "
            f"(wall: {loader[0] / bare[0]:.2f}); goal >= 0.80"
        )


if __name__ == "__main__":
    main()
