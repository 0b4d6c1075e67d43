"""Data subcommands: `preprocess` (labels + videos -> TFRecord shards), `check-shards`, `sample-data`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nitrogen_jax.data.preprocess import PreprocessConfig

_DEFAULTS = PreprocessConfig()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preprocess", help="labels in the public layout + local videos -> TFRecord shards (Apache Beam)",
                       description="Runs on Beam's DirectRunner unless pipeline options follow `--`, e.g. "
                                   "`-- --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp`.")
    p.add_argument("--labels", nargs="+", required=True, help="label roots: folders of <video_id>/<video_id>_chunk_NNNN, or tar shards")
    p.add_argument("--videos", required=True, help="a folder of <video_id>.<ext> files, or a JSON file {video_id: path}")
    p.add_argument("--out", required=True, help="output folder for *.tfrecord, *.tfrecord.index and manifest.json")
    p.add_argument("--preset", default=None, help="take --layout, --horizon and --action-fps from a model preset (release: nitrogen-500m)")
    p.add_argument("--layout", default=None, help=f"action layout of the targets (release, seed; default {_DEFAULTS.layout})")
    p.add_argument("--horizon", type=int, default=None, help=f"action steps per sample (default {_DEFAULTS.action_horizon})")
    p.add_argument("--action-fps", type=float, default=None, help=f"the model's action rate in Hz (default {_DEFAULTS.action_fps})")
    p.add_argument("--shift", type=int, default=_DEFAULTS.action_shift, help="action steps between frame and chunk start")
    p.add_argument("--frame-stride", type=int, default=_DEFAULTS.frame_stride, help="use every k-th label row as a frame")
    p.add_argument("--image-size", type=int, default=_DEFAULTS.image_size)
    p.add_argument("--jpeg-quality", type=int, default=_DEFAULTS.jpeg_quality)
    p.add_argument("--density-window", type=float, default=_DEFAULTS.density_window_s, help="seconds per filter window")
    p.add_argument("--density-threshold", type=float, default=_DEFAULTS.density_threshold,
                   help="minimum fraction of active label rows per window (0 disables the filter)")
    p.add_argument("--records-per-shard", type=int, default=_DEFAULTS.records_per_shard)
    p.add_argument("--strict", action="store_true", help="fail on the first bad input instead of skipping and counting it")
    p.add_argument("beam_args", nargs="*", help="Beam pipeline options, after `--`")
    p.set_defaults(func=_preprocess)

    p = sub.add_parser("check-shards", help="verify every record's framing and CRCs in a shards folder")
    p.add_argument("shards", help="folder of *.tfrecord shards")
    p.add_argument("--rebuild-index", action="store_true", help="rewrite each shard's .index sidecar from its framing")
    p.set_defaults(func=_check_shards)

    p = sub.add_parser("sample-data", help="build the small real Atari dataset (videos, labels) and its shards")
    p.add_argument("out", help="output folder")
    p.add_argument("--frames", type=int, default=240, help="labelled frames per game")
    p.add_argument("--horizon", type=int, default=_DEFAULTS.action_horizon)
    p.add_argument("--layout", default=_DEFAULTS.layout)
    p.add_argument("--games", default="ms_pacman,breakout",
                   help="comma-separated Atari games from ale-py's ROMs (ms_pacman, breakout, pong, space_invaders)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scripted play")
    p.set_defaults(func=_sample_data)


def _targets(args) -> tuple[str, int, float]:
    """Layout, horizon and action rate: explicit flags win, then the preset's, then the defaults."""
    if args.preset:
        from nitrogen_jax.config import get_config

        c = get_config(args.preset)
        base = (c.action_layout, c.action_horizon, c.action_fps)
    else:
        base = (_DEFAULTS.layout, _DEFAULTS.action_horizon, _DEFAULTS.action_fps)
    given = (args.layout, args.horizon, args.action_fps)
    return tuple(g if g is not None else b for g, b in zip(given, base))


def _preprocess(args) -> int:
    from nitrogen_jax.data.pipeline import run_preprocess

    layout, horizon, action_fps = _targets(args)
    cfg = PreprocessConfig(
        layout=layout, action_horizon=horizon, action_fps=action_fps, action_shift=args.shift,
        frame_stride=args.frame_stride, image_size=args.image_size, jpeg_quality=args.jpeg_quality,
        density_window_s=args.density_window, density_threshold=args.density_threshold,
        records_per_shard=args.records_per_shard, strict=args.strict)
    m = run_preprocess(args.labels, args.videos, args.out, cfg, beam_args=args.beam_args or None)
    print(json.dumps({k: m[k] for k in ("counts", "kept_fraction")}, indent=2))
    for s in m["skipped"]:
        print(f"skipped ({s['kind']}, {s['count']}): {s['input']}: {s['reason']}")
    print(f"wrote {len(m['shards'])} shards and {Path(args.out) / 'manifest.json'}")
    return 0


def _check_shards(args) -> int:
    from nitrogen_jax.data.tfrecord import RecordError, read_index, rebuild_index, scan_records

    shards = sorted(Path(args.shards).glob("*.tfrecord"))
    if not shards:
        raise FileNotFoundError(f"no *.tfrecord shards in {args.shards}")
    bad = 0
    for path in shards:
        try:
            n = rebuild_index(path) if args.rebuild_index else sum(1 for _ in scan_records(path))
            if not args.rebuild_index and n != len(read_index(path)):
                raise RecordError(f"{path}: {n} records in the file, {len(read_index(path))} in the index")
            print(f"ok   {path.name}: {n} records")
        except RecordError as e:
            bad += 1
            print(f"BAD  {e}")
    print(f"{len(shards) - bad} of {len(shards)} shards ok")
    return 1 if bad else 0


def _sample_data(args) -> int:
    from nitrogen_jax.data.sample_data import make_sample_shards

    shards = make_sample_shards(args.out, num_frames=args.frames, action_horizon=args.horizon, layout=args.layout,
                                seed=args.seed, games=tuple(g.strip() for g in args.games.split(",") if g.strip()))
    print(f"wrote sample videos, labels and shards under {args.out} (shards: {shards})")
    return 0
