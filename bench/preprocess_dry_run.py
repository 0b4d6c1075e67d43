"""The preprocessing launcher at the released dataset's full size, and the per-frame costs that size the cloud run.

No videos are needed: (1) the launcher builds the job graph over the released layout (100 tar shards, 38,739
videos, ~7M chunks of 20 s) and we measure its time, peak memory and the graph's size, against the old graph that
held one Create element per chunk (built at a fraction of full size: it grows linearly); (2) the per-video planning
runs on synthetic metadata (chunk counts drawn to total ~7M) to count work items and time the planner; (3) the
pipeline's report combining runs over the full-size number of segment reports and shard entries; (4) decode,
frame preparation, JPEG and Example encoding are timed per frame on generated 1080p and 720p H.264 video.

    python bench/preprocess_dry_run.py [--old-fraction 0.01]
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.data.beam import PipelineOptions, beam
from nitrogen_jax.data.layout import ChunkMetadata, ChunkRef
from nitrogen_jax.data.pipeline import absorb, build_pipeline, manifest
from nitrogen_jax.data.preprocess import LabelChunk, PreprocessConfig, encode_jpeg, plan_segments, prepare_frame
from nitrogen_jax.data.report import Report

VIDEOS, CHUNKS, SHARDS = 38_739, 7_000_000, 100
MAX_CHUNKS = 12 * 180  # a 12-hour stream


def measured(fn):
    """(result, seconds, peak MB of Python allocations) of fn()."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, dt, peak


def graph_bytes(p) -> int:
    return len(p.to_runner_api().SerializeToString())


def launcher(root: Path, cfg: PreprocessConfig) -> int:
    p = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
    build_pipeline(p, [root], str(root / "videos.json"), str(root / "out"), cfg, {"labels": [str(root)]})
    return graph_bytes(p)


def old_launcher(n: int) -> int:
    """The old graph: a Create of every chunk reference (what the launcher built before)."""
    refs = [
        ChunkRef(f"video{i // 181:05d}", i % 181, f"actions/SHARD_{i % SHARDS:04d}.tar.gz", f"x/video{i}_chunk_0000")
        for i in range(n)
    ]
    p = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"]))
    _ = p | beam.Create(refs) | beam.Map(lambda r: r)
    return graph_bytes(p)


def chunk_counts(rng: np.random.Generator) -> np.ndarray:
    """Chunks per video, long-tailed like a collection of streams and clips (at most 12 h), summing to ~CHUNKS."""
    raw = rng.lognormal(mean=4.5, sigma=1.0, size=VIDEOS)
    for _ in range(20):
        raw = np.minimum(raw * CHUNKS / raw.sum(), MAX_CHUNKS)
    return np.maximum(1, np.round(raw)).astype(int)


def synthetic_video(n_chunks: int, rng: np.random.Generator) -> list[LabelChunk]:
    pad = Gamepad(rng.random((1200, 17)) < 0.2, rng.uniform(-1, 1, (1200, 2)), rng.uniform(-1, 1, (1200, 2)))
    return [
        LabelChunk(f"v_chunk_{k:04d}", k, pad, ChunkMetadata("", k * 1200, k * 20.0, 1200, "g", extra={}))
        for k in range(n_chunks)
    ]


def per_frame_costs(tmp: Path, cfg: PreprocessConfig) -> list[tuple[str, float, float]]:
    """(resolution, decode ms/frame, prepare+JPEG+encode ms/sample) on generated H.264 (moving gradients)."""
    import av

    from nitrogen_jax.data.example import Sample, encode_sample
    from nitrogen_jax.data.video import frames_at_times

    rows = []
    for w, h in ((1920, 1080), (1280, 720)):
        path = tmp / f"{h}p.mp4"
        n = 90
        with av.open(str(path), "w") as out:
            s = out.add_stream("libx264", rate=60)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            yy, xx = np.mgrid[0:h, 0:w]
            for i in range(n):
                img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, (xx + yy + i) % 256], -1).astype(np.uint8)
                for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(pkt)
            for pkt in s.encode():
                out.mux(pkt)
        times = np.arange(n) / 60
        t0 = time.perf_counter()
        frames = [f for _, _, f in frames_at_times(str(path), times, 60.0)]
        t_decode = (time.perf_counter() - t0) / n
        meta = ChunkMetadata("", 0, 0.0, 1200, "g", bbox_controller_overlay=[0.7, 0.7, 0.2, 0.2], extra={})
        actions = np.zeros((cfg.action_horizon, 25), np.float32)
        t0 = time.perf_counter()
        sizes = []
        for k, f in enumerate(frames):
            jpeg = encode_jpeg(prepare_frame(f, meta, cfg.image_size), cfg.jpeg_quality)
            sizes.append(len(encode_sample(Sample(jpeg, actions, actions, "v", k, k))))
        rows.append((f"{h}p", 1e3 * t_decode, 1e3 * (time.perf_counter() - t0) / n, float(np.mean(sizes))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-fraction", type=float, default=0.01)
    args = ap.parse_args()
    cfg = PreprocessConfig()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(SHARDS):  # the released layout as the launcher sees it: a folder of 100 tar shards
            (root / f"SHARD_{i:04d}.tar.gz").touch()
        (root / "videos.json").write_text("{}")
        size, t_new, mem_new = measured(lambda: launcher(root, cfg))
        n_old = int(CHUNKS * args.old_fraction)
        old_size, t_old, mem_old = measured(lambda: old_launcher(n_old))
        print("## Launcher (job graph), released layout: 100 shards, 38,739 videos, ~7M chunks\n")
        print("| graph | chunks in graph | build s | peak Python MB | graph bytes |")
        print("|---|---|---|---|---|")
        print(
            f"| MatchAll over the label roots (now) | 0 (found on workers) | {t_new:.2f} | {mem_new:.1f} | {size:,} |"
        )
        print(
            f"| Create of every chunk (before), {n_old:,} chunks | {n_old:,} | {t_old:.2f} | {mem_old:.0f} "
            f"| {old_size:,} |"
        )
        print(
            f"\nold graph per chunk: {old_size / n_old:.0f} bytes -> {old_size / n_old * CHUNKS / 2**20:,.0f} MB at "
            f"{CHUNKS:,} chunks (linear; Dataflow's job request limit is 10 MB)\n"
        )

        counts = chunk_counts(rng)
        seg_per_video = np.ceil(counts * 20 / cfg.segment_s).astype(int)
        hours = counts.sum() * 20 / 3600
        big = synthetic_video(int(counts.max()), rng)
        typical = synthetic_video(int(np.median(counts)), rng)
        rep = Report()
        segs, t_big, mem_big = measured(lambda: plan_segments("v", big, "v.mp4", 60.0, cfg, rep))
        _, t_typ, _ = measured(lambda: plan_segments("v", typical, "v.mp4", 60.0, cfg, Report()))
        seg_bytes = max(len(pickle.dumps(s)) for s in segs)
        print(f"## Work items (synthetic metadata, segment_s = {cfg.segment_s:.0f})\n")
        print(
            "| videos | chunks | hours | segments (work items) | largest video | plan s (largest / median video) "
            "| plan peak MB (largest) | largest segment pickled |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print(
            f"| {VIDEOS:,} | {counts.sum():,} | {hours:,.0f} | {seg_per_video.sum():,} | {counts.max()} chunks "
            f"({counts.max() * 20 / 3600:.1f} h) | {t_big:.2f} / {t_typ:.3f} | {mem_big:.0f} | "
            f"{seg_bytes / 2**20:.1f} MB |"
        )
        total_plan_h = (t_big / counts.max()) * counts.sum() / 3600
        print(f"\nplanning, all videos: ~{total_plan_h:.1f} core-hours (largest video's rate)\n")

        samples = counts.sum() * 1200 // cfg.frame_stride
        n_shards = int(samples // cfg.records_per_shard + seg_per_video.sum())
        per_seg = max(1, n_shards // int(seg_per_video.sum()))

        def combine() -> dict:
            acc = Report()
            for i in range(int(seg_per_video.sum())):
                r = Report()
                r.count("samples", cfg.records_per_shard * per_seg)
                r.shards = [{"file": f"video{i:06d}-00000-{k:03d}.tfrecord", "records": 4096} for k in range(per_seg)]
                absorb(acc, r)
            return manifest(acc, cfg, {"labels": ["s3://bucket/actions"]})

        m, t_comb, mem_comb = measured(combine)
        mbytes = len(json.dumps(m, indent=2))
        print("## Manifest combine at full size\n")
        print("| segment reports | shard entries | combine + manifest s | peak MB | manifest.json MB |")
        print("|---|---|---|---|---|")
        print(
            f"| {int(seg_per_video.sum()):,} | {len(m['shards']):,} | {t_comb:.1f} | {mem_comb:.0f} | "
            f"{mbytes / 2**20:.0f} |\n"
        )

        rows = per_frame_costs(root, cfg)
        print(
            "## Per-frame cost on this machine (1 core, PyAV H.264 decode; prepare = mask, crop, resize 256, "
            "JPEG q95, Example)\n"
        )
        print("| source | decode ms/frame | prepare+encode ms/sample | record KB |")
        print("|---|---|---|---|")
        for res, dec, prep, kb in rows:
            print(f"| {res} | {dec:.2f} | {prep:.2f} | {kb / 1024:.1f} |")
        print("\n## Whole dataset (40k hours at 60 label rows/s, frame_stride 1, source video at 60 fps)\n")
        print("| source | core-hours | 100 workers x 16 vCPU: hours | shards storage TB |")
        print("|---|---|---|---|")
        frames = 40_000 * 3600 * 60
        for res, dec, prep, kb in rows:
            core_h = frames * (dec + prep) / 1e3 / 3600
            print(f"| {res} | {core_h:,.0f} | {core_h / 1600:.1f} | {frames * kb / 1e12:.0f} |")
        print(f"\nru_maxrss of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
