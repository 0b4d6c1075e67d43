"""Training metrics to TensorBoard event files (tensorboardX, no TensorFlow) and to a JSONL file.

JSONL lines are flushed as written, so a run killed at any point leaves every finished step on disk; a resumed run
appends, and for a step logged twice the later line is the resumed run's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

JSONL_FILE = "metrics.jsonl"


class MetricWriter:
    def __init__(self, logdir: str | Path, enabled: bool = True):
        self.logdir = Path(logdir)
        self.enabled = enabled
        if enabled:
            from tensorboardX import SummaryWriter

            self.logdir.mkdir(parents=True, exist_ok=True)
            self._tb = SummaryWriter(str(self.logdir), flush_secs=10)
            self._jsonl = open(self.logdir / JSONL_FILE, "a", buffering=1)  # noqa: SIM115 (closed by close())

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        self._jsonl.write(json.dumps({"step": step, **clean}) + "\n")
        for k, v in clean.items():
            if math.isfinite(v):
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def by_step(records: list[dict], key: str) -> dict[int, float]:
    """{step: value} of one metric, later lines winning (a resumed run re-logs the steps after its checkpoint)."""
    return {r["step"]: r[key] for r in records if key in r}
