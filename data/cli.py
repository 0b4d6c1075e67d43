"""Data commands: `preprocess` (labels + videos -> TFRecord shards), `check-shards`, `sample-data`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Annotated

import tyro

from nitrogen_jax.config import get_config
from nitrogen_jax.data.preprocess import PreprocessConfig

_DEFAULTS = PreprocessConfig()


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreprocessArgs:
    """Labels in the public layout + local videos -> TFRecord shards, index sidecars and manifest.json.

    Runs on Beam's DirectRunner unless pipeline options follow `--`, e.g.
    `-- --runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp`.
    """

    labels: tuple[str, ...]
    """Label roots: folders of <video_id>/<video_id>_chunk_NNNN, or the released tar shards (local, gs://, s3://)."""
    videos: str
    """A folder of <video_id>.<ext> files, or a JSON file {video_id: path} (local, gs://, s3://)."""
    out: str
    """Output folder for *.tfrecord, *.tfrecord.index and manifest.json (local, gs://, s3://; strings, since a
    Path would turn s3://b into s3:/b)."""
    preset: str | None = None
    """Take the layout, action horizon and action rate defaults from a model preset (the release: nitrogen-500m);
    explicit --layout / --action-horizon / --action-fps still win."""
    config: Annotated[PreprocessConfig, tyro.conf.arg(name="")] = _DEFAULTS
    beam_args: tyro.conf.Positional[tuple[str, ...]] = ()
    """Beam pipeline options, after `--`."""

    @classmethod
    def default_for(cls, argv: list[str]) -> PreprocessArgs:
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--preset", default=None)
        preset = pre.parse_known_args(argv)[0].preset
        config = _DEFAULTS
        if preset:
            c = get_config(preset)
            config = dataclasses.replace(
                config, layout=c.action_layout, action_horizon=c.action_horizon, action_fps=c.action_fps
            )
        return cls(labels=tyro.MISSING, videos=tyro.MISSING, out=tyro.MISSING, preset=preset, config=config)

    def run(self) -> int:
        from nitrogen_jax.data.pipeline import run_preprocess

        m = run_preprocess(
            list(self.labels), self.videos, self.out, self.config, beam_args=list(self.beam_args) or None
        )
        print(json.dumps({k: m[k] for k in ("counts", "kept_fraction")}, indent=2))
        for s in m["skipped"]:
            print(f"skipped ({s['kind']}, {s['count']}): {s['input']}: {s['reason']}")
        print(f"wrote {len(m['shards'])} shards and {self.out.rstrip('/')}/manifest.json")
        return 0


@dataclasses.dataclass(frozen=True)
class CheckShardsArgs:
    """Verify every record's framing and CRCs in a shards folder."""

    shards: tyro.conf.Positional[Path]
    """Folder of *.tfrecord shards."""
    rebuild_index: bool = False
    """Rewrite each shard's .index sidecar from its framing."""

    def run(self) -> int:
        from nitrogen_jax.data.tfrecord import RecordError, read_index, rebuild_index, scan_records

        shards = sorted(self.shards.glob("*.tfrecord"))
        if not shards:
            raise FileNotFoundError(f"no *.tfrecord shards in {self.shards}")
        bad = 0
        for path in shards:
            try:
                n = rebuild_index(path) if self.rebuild_index else sum(1 for _ in scan_records(path))
                if not self.rebuild_index and n != len(read_index(path)):
                    raise RecordError(f"{path}: {n} records in the file, {len(read_index(path))} in the index")
                print(f"ok   {path.name}: {n} records")
            except RecordError as e:
                bad += 1
                print(f"BAD  {e}")
        print(f"{len(shards) - bad} of {len(shards)} shards ok")
        return 1 if bad else 0


@dataclasses.dataclass(frozen=True)
class SampleDataArgs:
    """Build the small real Atari dataset (videos with an input overlay, labels) and its shards."""

    out: tyro.conf.Positional[Path]
    """Output folder."""
    frames: int = 240
    """Labelled frames per game."""
    action_horizon: int = _DEFAULTS.action_horizon
    """Action steps per sample in the shards."""
    layout: str = _DEFAULTS.layout
    """Action layout of the shards (release, seed)."""
    games: tuple[str, ...] = ("ms_pacman", "breakout")
    """Atari games from ale-py's ROMs (ms_pacman, breakout, pong, space_invaders)."""
    seed: int = 0
    """Seed of the scripted play."""

    def run(self) -> int:
        from nitrogen_jax.data.sample_data import make_sample_shards

        shards = make_sample_shards(
            self.out,
            num_frames=self.frames,
            action_horizon=self.action_horizon,
            layout=self.layout,
            seed=self.seed,
            games=self.games,
        )
        print(f"wrote sample videos, labels and shards under {self.out} (shards: {shards})")
        return 0
