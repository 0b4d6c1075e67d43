"""`nitrogen-jax e2e`: the whole main job on an embedded default, or one stage of it (`--stage train`).

nitrogen-jax e2e                       # record, extract, preprocess, train, evaluate, report into runs/e2e
nitrogen-jax e2e --stage evaluate      # one stage (the stages it reads must be done)
nitrogen-jax e2e --train-steps 3000    # a changed setting re-runs train and everything after it
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

StageName = Literal["record", "extract", "preprocess", "train", "evaluate", "report"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class E2EArgs:
    """Run the end-to-end pipeline (or one stage); stages done with the same settings and inputs are skipped."""

    out: Path = Path("runs/e2e")
    """Run folder: record/, extract/, shards/, train/, eval/, report/ and stages/ (what each stage did)."""
    stage: StageName | None = None
    """Run only this stage (default: all, in order)."""
    force: bool = False
    """Run the chosen stage(s) even when done with the same settings."""
    games: tuple[str, ...] | None = None
    """Games to record (default: ale:Breakout)."""
    videos_per_game: int | None = None
    """Recordings per game (default 4)."""
    seconds: float | None = None
    """Seconds per recording (default 40)."""
    extract: Literal["auto", "overlay", "truth"] | None = None
    """How labels are obtained: 'overlay' reads them off the video, 'truth' uses the withheld labels."""
    train_steps: int | None = None
    """Optimiser steps (default 1200)."""
    batch_size: int | None = None
    """Training batch (default 16)."""
    tasks: str | None = None
    """Evaluation tasks (default breakout_break_3,breakout_break_brick)."""
    rollouts: int | None = None
    """Rollouts per task and agent (default 30)."""

    def settings(self):
        from nitrogen_jax.e2e.settings import E2ESettings

        s = E2ESettings()
        rec = {
            k: v
            for k, v in (("games", self.games), ("videos_per_game", self.videos_per_game), ("seconds", self.seconds))
            if v is not None
        }
        train = {k: v for k, v in (("num_steps", self.train_steps), ("batch_size", self.batch_size)) if v is not None}
        if "num_steps" in train:
            train["save_every"] = min(s.train.save_every, train["num_steps"])
        ev = {k: v for k, v in (("tasks", self.tasks), ("rollouts", self.rollouts)) if v is not None}
        return dataclasses.replace(
            s,
            record=dataclasses.replace(s.record, **rec),
            extract=dataclasses.replace(s.extract, method=self.extract or s.extract.method),
            train=s.train.replace(**train),
            eval=dataclasses.replace(s.eval, **ev),
        )


def run(args: E2EArgs) -> int:
    from nitrogen_jax.e2e.stages import STAGE_NAMES, run_all

    t0 = time.perf_counter()
    stages = (args.stage,) if args.stage else STAGE_NAMES
    results = run_all(args.out, args.settings(), stages, force=args.force)
    ran = [r.name for r in results if not r.skipped]
    print(f"e2e: {len(ran)} stage(s) ran ({', '.join(ran) or 'none'}) in {time.perf_counter() - t0:.0f} s")
    page = args.out / "report" / "report.md"
    if page.exists():
        print(f"report: {page}")
    return 0
