"""What a finished stage leaves behind: `<out>/stages/<name>/stage.json` (fingerprint, seconds, summary,
settings). Apart from the runner so the report page can read it without importing the runner."""

from __future__ import annotations

import json
from pathlib import Path

STAGE_FILE = "stage.json"
STAGE_ORDER = ("record", "extract", "preprocess", "train", "evaluate", "report")


def stage_dir(out: Path, name: str) -> Path:
    return Path(out) / "stages" / name


def read_stage(out: Path, name: str) -> dict | None:
    """The stage's record, or None when it has not finished in `out`."""
    path = stage_dir(out, name) / STAGE_FILE
    return json.loads(path.read_text()) if path.exists() else None
