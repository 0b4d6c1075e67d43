"""Overlay extraction measured on videos the parser never trained on, printed as a markdown table.

Every video is rendered fresh by `data/overlay/synth.py` on held-out game backgrounds (`HELDOUT_GAMES`), at 30 fps
and low bitrates, with random placement, scale, opacity, lag and distractors. Rows:
- held-out renders: the parser's training styles (each once) on unseen backgrounds, seeds and bitrates;
- held-out style: `HELDOUT_STYLES`, which the parser never saw, given only their neutral template;
- no overlay: gameplay without an overlay, where any "found" is a false positive.

Columns: overlay found rate (and placement error against the true affine), per-frame button accuracy (17 buttons,
the cleaned labels against what the overlay shows), stick R^2 (both sticks, both axes pooled, against the per-axis
mean), mean absolute trigger error (the parser's analog reading), and speed: video frames per CPU-second of this
process (= frames/s per core) and per wall second, for the whole per-video extraction (decode, localise, rectify,
parse, clean). Labels are not written; `VideoExtractor.extract` is what `nitrogen-jax extract` runs per video.

    python bench/extraction_accuracy.py [--videos 12] [--seconds 4] [--free 20] [--parser DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

BITRATES_KBPS = (400, 800)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def stick_r2(pred: np.ndarray, true: np.ndarray) -> float:
    """1 - SSE / SST over all stick values, SST about each axis's own mean."""
    return float(1 - ((pred - true) ** 2).sum() / max(((true - true.mean(0)) ** 2).sum(), 1e-12))


def corner_error(a: np.ndarray, b: np.ndarray, size: tuple[int, int]) -> float:
    w, h = size
    c = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    return float(np.abs((c @ a[:, :2].T + a[:, 2]) - (c @ b[:, :2].T + b[:, 2])).max())


def make_videos(root: Path, styles: list[str | None], seconds: float, seed0: int) -> list:
    from nitrogen_jax.data.overlay.synth import HELDOUT_GAMES, make_overlay_video

    out = []
    for i, style in enumerate(tqdm(styles, desc=f"render {root.name}", unit="video", leave=False)):
        seed = seed0 + i
        out.append(
            make_overlay_video(
                root / f"{seed}.mp4",
                game=HELDOUT_GAMES[i % len(HELDOUT_GAMES)],
                style=style,
                seed=seed,
                fps=30,
                seconds=seconds,
                bitrate_kbps=BITRATES_KBPS[i % 2],
            )
        )
    return out


def locate(extractor, path: Path, with_parser: bool):
    """(LocalizeResult, VideoExtraction or None): the full per-video extraction, or localisation alone."""
    from nitrogen_jax.data.overlay.extract import sample_frames
    from nitrogen_jax.data.overlay.localize import localize
    from nitrogen_jax.data.report import Report

    if with_parser:
        result = extractor.extract(path, Report())
        return result.found, result
    return localize(sample_frames(path, extractor.args.num_frames)[0], extractor.library), None


def score(extractor, videos: list, with_parser: bool) -> dict:
    """Extract each video and compare with its truth; sums for the table row."""
    found, families_ok, placement, frames, wall, cpu, parse_wall = 0, 0, [], 0, 0.0, 0.0, 0.0
    buttons, sticks_pred, sticks_true, trig_err, per_video = [], [], [], [], []
    for v in tqdm(videos, desc="extract", unit="video", leave=False):
        w0, c0 = time.perf_counter(), cpu_seconds()
        located, result = locate(extractor, v.path, with_parser)
        wall += time.perf_counter() - w0
        cpu += cpu_seconds() - c0
        if located is None or not located.found:
            continue
        found += 1
        if not v.has_overlay:
            continue
        families_ok += located.family == v.family
        placement.append(corner_error(located.affine, v.overlay_affine, located.template.size))
        if result is not None and result.labels is not None:
            pad = result.labels.per_frame
            frames += len(pad)
            parse_wall += result.summary["seconds_parse"]
            buttons.append(pad.buttons == np.stack([s.buttons for s in v.truth]))
            sticks_pred.append(np.concatenate([pad.j_left, pad.j_right], 1))
            sticks_true.append(np.stack([np.concatenate([s.j_left, s.j_right]) for s in v.truth]))
            trig_err.append(np.abs(result.parsed["triggers"] - np.stack([s.triggers for s in v.truth])))
            per_video.append((v, float(buttons[-1].mean()), stick_r2(sticks_pred[-1], sticks_true[-1])))
    row = {
        "videos": len(videos),
        "found": found,
        "families_ok": families_ok,
        "placement_px": float(np.max(placement)) if placement else float("nan"),
        "frames": frames,
        "wall": wall,
        "cpu": cpu,
        "parse_wall": parse_wall,
        "per_video": per_video,
    }
    if buttons:
        row.update(
            button_acc=float(np.concatenate(buttons).mean()),
            stick_r2=stick_r2(np.concatenate(sticks_pred), np.concatenate(sticks_true)),
            trigger_mae=float(np.concatenate(trig_err).mean()),
        )
    return row


def fmt(v, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--videos", type=int, default=None, help="overlaid videos of the training styles (default: one per style)"
    )
    p.add_argument("--seconds", type=float, default=4.0, help="length of each overlaid video")
    p.add_argument("--free", type=int, default=20, help="overlay-free videos (1 s each: only localisation runs)")
    p.add_argument("--parser", default=None, help="parser weights folder (default: the shipped weights)")
    p.add_argument("--out", default=None, help="keep the rendered videos here (default: a temporary folder)")
    a = p.parse_args()

    from nitrogen_jax.data.overlay.extract import ExtractArgs, VideoExtractor
    from nitrogen_jax.data.overlay.parser import PARAMS_FILE, WEIGHTS_DIR, OverlayParser
    from nitrogen_jax.data.overlay.styles import HELDOUT_STYLES, TRAIN_STYLES

    if a.videos is not None and not 1 <= a.videos <= len(TRAIN_STYLES):
        p.error(f"--videos must be 1-{len(TRAIN_STYLES)} (one video per training style at most), got {a.videos}")

    weights = Path(a.parser) if a.parser else WEIGHTS_DIR
    parser = OverlayParser.load(weights) if (weights / PARAMS_FILE).is_file() else None
    extractor = VideoExtractor(ExtractArgs(density_threshold=0.0, progress=False), parser)
    root = Path(a.out or tempfile.mkdtemp(prefix="extraction_bench_"))
    rng = np.random.default_rng(0)
    # every training style once, in a seeded order (so `--videos 6` measures the first six of these same videos)
    train = [TRAIN_STYLES[i] for i in rng.permutation(len(TRAIN_STYLES))[: a.videos]]
    sets = [
        ("held-out renders (train styles)", make_videos(root / "renders", train, a.seconds, 1000)),
        ("held-out style (template only)", make_videos(root / "heldout_style", list(HELDOUT_STYLES), a.seconds, 2000)),
        ("no overlay (false positives)", make_videos(root / "free", [None] * a.free, 1.0, 3000)),
    ]
    if parser is not None:  # compile the parser's batch shape once, outside the timings
        from nitrogen_jax.data.overlay.parser import PARSER_INPUT_HW

        crop = np.zeros((extractor.args.batch_size, *PARSER_INPUT_HW, 3), np.uint8)
        parser.parse(crop, crop, crop[0])
    rows = [(name, score(extractor, videos, parser is not None)) for name, videos in sets]

    print(
        f"\nOverlay extraction on held-out games, 30 fps, {'/'.join(map(str, BITRATES_KBPS))} kbps H.264 "
        f"({os.cpu_count()} CPU cores, parser: {weights if parser else 'none found: localisation only'})\n"
    )
    print(
        "| videos | found | family right | placement error (max px) | button acc | stick R^2 | trigger MAE "
        "| frames/s per core | frames/s wall | frames/s wall, decode+parse only |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        per_core = r["frames"] / r["cpu"] if r["frames"] else None
        wall = r["frames"] / r["wall"] if r["frames"] else None
        parse = r["frames"] / r["parse_wall"] if r["frames"] else None
        print(
            f"| {name} ({r['videos']}) | {r['found']}/{r['videos']} | {r['families_ok']}/{r['found']} | "
            f"{fmt(r['placement_px'], '.2f')} | {fmt(r.get('button_acc'), '.4f')} | {fmt(r.get('stick_r2'), '.4f')} "
            f"| {fmt(r.get('trigger_mae'), '.4f')} | {fmt(per_core, '.1f')} | {fmt(wall, '.1f')} "
            f"| {fmt(parse, '.1f')} |"
        )
    print("\nPer video (the pooled R^2 above weighs each video by its stick variance):\n")
    print("| set | style | game | kb/s | opacity | scale | button acc | stick R^2 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        for v, acc, r2 in r["per_video"]:
            print(
                f"| {name} | {v.style} | {v.game} | {v.bitrate_kbps} | {v.opacity:.2f} | {v.scale:.2f} "
                f"| {acc:.4f} | {r2:.4f} |"
            )
    free = rows[-1][1]
    print(
        f"\nlocalisation: {free['wall'] / free['videos']:.2f} s wall per video on the overlay-free set "
        f"(all 25 sampled frames searched); videos in {root}"
    )


if __name__ == "__main__":
    main()
