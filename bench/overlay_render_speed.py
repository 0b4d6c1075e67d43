"""Overlay renderer and synthetic-video speed on this machine's CPU, printed as tables.

Render rows: renders per second of wall time and per CPU-second (one process, one thread) for each family, as
premultiplied RGBA (what training and compositing use), straight RGBA (`render_overlay`), and render + composite
into a 640x360 frame. Video rows: seconds to make one 640x360 synthetic video (emulator + overlay + distractors +
encoding) per fps, codec and bitrate, with the file size.

    .venv/bin/python bench/overlay_render_speed.py [--renders 600] [--seconds 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def measure(fn, n: int) -> tuple[float, float]:
    """(items/s wall, items per CPU-second) of fn(), which processes n items."""
    w0, c0 = time.perf_counter(), cpu_seconds()
    fn()
    wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
    return n / wall, n / max(cpu, 1e-9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--renders", type=int, default=600, help="renders timed per row")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each timed video")
    p.add_argument("--game", default="ale:breakout")
    args = p.parse_args()

    import cv2

    cv2.setNumThreads(1)
    from nitrogen_jax.data.overlay.render import composite, render_overlay, render_premultiplied
    from nitrogen_jax.data.overlay.styles import FAMILIES, STYLES
    from nitrogen_jax.data.overlay.synth import make_overlay_video, random_pad_stream

    states = random_pad_stream(args.renders, 60, np.random.default_rng(0))
    frame = np.random.default_rng(1).integers(0, 255, (360, 640, 3), np.uint8)
    print("| family | styles | premultiplied renders/s (per CPU-s) | straight RGBA renders/s | render + composite/s |")
    print("|---|---|---|---|---|")
    for family in FAMILIES:
        styles = [s for s in STYLES.values() if s.family == family]
        for s in styles:  # draw and cache each style's still parts outside the timing
            render_premultiplied(s, None)

        def premul(styles=styles):
            for i, st in enumerate(states):
                render_premultiplied(styles[i % len(styles)], st)

        def straight(styles=styles):
            for i, st in enumerate(states):
                render_overlay(styles[i % len(styles)], st)

        def comp(styles=styles):
            for i, st in enumerate(states):
                composite(
                    frame,
                    render_premultiplied(styles[i % len(styles)], st),
                    x=100.5,
                    y=60.25,
                    scale=0.6 + 0.6 * (i % 7) / 6,
                    opacity=0.8,
                    premultiplied=True,
                )

        cells = [measure(fn, len(states)) for fn in (premul, straight, comp)]
        print(f"| {family} | {len(styles)} | " + " | ".join(f"{w:.0f} ({c:.0f})" for w, c in cells) + " |")

    print()
    print(
        f"| video ({args.seconds:g} s, 640x360, {args.game}) | codec | bitrate kbps | seconds to make | CPU-s "
        "| x real time | size KB |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for fps, codec, kbps in (
            (30, "h264", 500),
            (30, "h264", 1500),
            (60, "h264", 1500),
            (60, "h264", 4000),
            (60, "mp4v", 1500),
        ):
            path = Path(tmp) / f"v_{fps}_{codec}_{kbps}.mp4"
            w0, c0 = time.perf_counter(), cpu_seconds()
            make_overlay_video(
                path,
                game=args.game,
                style="xbox_filled_dark",
                seed=0,
                fps=fps,
                seconds=args.seconds,
                bitrate_kbps=kbps,
                codec=codec,
            )
            wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
            print(
                f"| {fps} fps | {codec} | {kbps} | {wall:.2f} | {cpu:.2f} | {args.seconds / wall:.1f} "
                f"| {path.stat().st_size / 1024:.0f} |"
            )


if __name__ == "__main__":
    main()
