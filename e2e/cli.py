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

from nitrogen_jax.e2e.settings import E2ESettings

_D = E2ESettings()
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
    games: tuple[str, ...] = _D.record.games
    """Games to record (each needs a scripted player in e2e.players)."""
    videos_per_game: int = _D.record.videos_per_game
    """Recordings per game."""
    seconds: float = _D.record.seconds
    """Seconds per recording (60 game frames each)."""
    extract: Literal["auto", "overlay", "truth"] = "auto"
    """How labels are obtained: 'overlay' reads them off the video, 'truth' uses the withheld labels, 'auto' the
    overlay extractor where installed."""
    train_steps: int = _D.train.num_steps
    """Optimiser steps."""
    batch_size: int = _D.train.batch_size
    """Training batch."""
    tasks: str = _D.eval.tasks
    """Evaluation tasks (sim_bridge.tasks names, comma-separated)."""
    rollouts: int = _D.eval.rollouts
    """Rollouts per task and agent."""

    def settings(self) -> E2ESettings:
        s = _D
        return dataclasses.replace(
            s,
            record=dataclasses.replace(
                s.record, games=tuple(self.games), videos_per_game=self.videos_per_game, seconds=self.seconds
            ),
            extract=dataclasses.replace(s.extract, method=self.extract),
            train=s.train.replace(
                num_steps=self.train_steps,
                batch_size=self.batch_size,
                save_every=min(s.train.save_every, self.train_steps),
                warmup_steps=min(s.train.warmup_steps, self.train_steps),
            ),
            eval=dataclasses.replace(s.eval, tasks=self.tasks, rollouts=self.rollouts),
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
