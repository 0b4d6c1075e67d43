"""What a preprocessing run did, mergeable across workers: counts, skipped inputs with reasons, action statistics.

Every dropped input or sample is counted under a named key and, for inputs, listed with its reason, so the
manifest accounts for everything that went in.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np


@dataclasses.dataclass
class Report:
    counts: Counter = dataclasses.field(default_factory=Counter)
    skipped: list = dataclasses.field(default_factory=list)  # {"input", "reason", "count"}
    shards: list = dataclasses.field(default_factory=list)  # {"file", "records"}
    # float64 [A] each, from the first actions on (None before): sums, sums of squares, min and max over the
    # unmasked action steps written
    action_sum: Any = None
    action_sumsq: Any = None
    action_min: Any = None
    action_max: Any = None
    action_steps: int = 0

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def skip(self, input_name: str, reason: str, *, count: int = 1, key: str = "inputs_skipped") -> None:
        self.counts[key] += count
        self.skipped.append({"input": str(input_name), "reason": reason, "count": count, "kind": key})

    def add_actions(self, actions: np.ndarray, mask: np.ndarray) -> None:
        ok = mask[:, 0] > 0
        a = actions[ok].astype(np.float64)
        if not len(a):
            return
        if self.action_sum is None:
            dim = a.shape[1]
            self.action_sum, self.action_sumsq = np.zeros(dim), np.zeros(dim)
            self.action_min, self.action_max = np.full(dim, np.inf), np.full(dim, -np.inf)
        self.action_sum += a.sum(0)
        self.action_sumsq += (a * a).sum(0)
        self.action_min = np.minimum(self.action_min, a.min(0))
        self.action_max = np.maximum(self.action_max, a.max(0))
        self.action_steps += len(a)

    def merge(self, other: Report) -> Report:
        out = Report(self.counts + other.counts, self.skipped + other.skipped, self.shards + other.shards)
        parts = [r for r in (self, other) if r.action_sum is not None]
        if parts:
            out.action_sum = sum(r.action_sum for r in parts)
            out.action_sumsq = sum(r.action_sumsq for r in parts)
            out.action_min = np.minimum.reduce([r.action_min for r in parts])
            out.action_max = np.maximum.reduce([r.action_max for r in parts])
            out.action_steps = sum(r.action_steps for r in parts)
        return out

    def action_stats(self, names: tuple[str, ...]) -> dict:
        """Per action dimension: mean, std, min, max over the unmasked steps written."""
        if self.action_sum is None:
            return {}
        mean = self.action_sum / self.action_steps
        std = np.sqrt(np.maximum(self.action_sumsq / self.action_steps - mean**2, 0))
        return {
            n: {"mean": round(float(m), 6), "std": round(float(s), 6), "min": float(lo), "max": float(hi)}
            for n, m, s, lo, hi in zip(names, mean, std, self.action_min, self.action_max, strict=False)
        }
