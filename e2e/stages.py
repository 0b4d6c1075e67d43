"""The stage runner: record -> extract -> preprocess -> train -> evaluate -> report, each in its own folder.

A stage is done when its folder holds `stage.json` with the fingerprint of its settings and of its inputs (the
fingerprints of the stages it reads); re-running skips it then. A stage whose fingerprint changed is cleared and
run again, and so, through the fingerprints, is everything downstream of it. Any stage runs alone once the
stages it reads are done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nitrogen_jax.e2e.settings import E2ESettings
from nitrogen_jax.e2e.stage_record import STAGE_FILE, STAGE_ORDER, read_stage, stage_dir


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]  # the stages whose outputs it reads
    settings: Callable[[E2ESettings], Any]  # the part of the settings it depends on
    run: Callable[[Path, E2ESettings], dict]  # (run folder, settings) -> a summary kept in stage.json


def _record(out: Path, s: E2ESettings) -> dict:
    from nitrogen_jax.e2e.record import record

    done = record(out / "record", s.record)
    return {"videos": len(done), "frames": sum(d["frames"] for d in done)}


def _extract(out: Path, s: E2ESettings) -> dict:
    from nitrogen_jax.e2e.extraction import extract_and_score

    return extract_and_score(out / "record", out / "extract", s.extract)


def _preprocess(out: Path, s: E2ESettings) -> dict:
    from nitrogen_jax.data.pipeline import run_preprocess

    m = run_preprocess([out / "extract" / "labels"], out / "record" / "videos", out / "shards", s.preprocess)
    if not m["shards"]:
        raise ValueError(f"preprocess wrote no shards under {out / 'shards'}: {m['counts']}, skipped {m['skipped']}")
    return {"counts": m["counts"], "kept_fraction": m["kept_fraction"]}


def _train(out: Path, s: E2ESettings) -> dict:
    from nitrogen_jax.train.data import tfrecord_batches
    from nitrogen_jax.train.loop import train

    summary = train(s.model, s.train, tfrecord_batches(out / "shards", augment=s.augment), out / "train")
    return {"steps": summary.final_step, "loss": summary.last_metrics.get("loss"), "policy": str(summary.policy_dir)}


def _evaluate(out: Path, s: E2ESettings) -> dict:
    from nitrogen_jax.e2e.evaluation import evaluate_policy

    return evaluate_policy(out / "train" / "policy", out / "extract" / "labels", out / "eval", s.eval)


def _report(out: Path, s: E2ESettings) -> dict:
    from nitrogen_jax.e2e.report import write_report

    return {"page": str(write_report(out, s))}


STAGES: tuple[Stage, ...] = (
    Stage("record", (), lambda s: s.record, _record),
    Stage("extract", ("record",), lambda s: s.extract, _extract),
    Stage("preprocess", ("record", "extract"), lambda s: s.preprocess, _preprocess),
    Stage("train", ("preprocess",), lambda s: (s.model, s.train, s.augment), _train),
    Stage("evaluate", ("train", "extract"), lambda s: s.eval, _evaluate),
    Stage("report", ("record", "extract", "train", "evaluate"), lambda s: s.eval.gif_frames, _report),
)
STAGE_NAMES = tuple(st.name for st in STAGES)
assert STAGE_NAMES == STAGE_ORDER, (STAGE_NAMES, STAGE_ORDER)
_BY_NAME = {st.name: st for st in STAGES}


def fingerprint(out: Path, stage: Stage, s: E2ESettings) -> str:
    """sha256 of the stage's settings and its inputs' recorded fingerprints (a missing input raises)."""
    inputs = {}
    for name in stage.inputs:
        done = read_stage(out, name)
        if done is None:
            raise FileNotFoundError(
                f"stage {stage.name!r} needs stage {name!r}, which has not run in {out} (run it first, or all stages)"
            )
        inputs[name] = done["fingerprint"]
    settings = stage.settings(s)
    blob = json.dumps({"settings": _jsonable(settings), "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _jsonable(x):
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    if isinstance(x, tuple):
        return [_jsonable(v) for v in x]
    return x


# the folders each stage writes (cleared before it re-runs)
OUTPUTS: dict[str, tuple[str, ...]] = {
    "record": ("record",),
    "extract": ("extract",),
    "preprocess": ("shards",),
    "train": ("train",),
    "evaluate": ("eval",),
    "report": ("report",),
}


@dataclasses.dataclass(frozen=True)
class StageResult:
    name: str
    skipped: bool
    seconds: float
    summary: dict


def run_stage(out: Path, name: str, s: E2ESettings, force: bool = False, say=print) -> StageResult:
    """Run one stage unless it is done with the same fingerprint (or `force`)."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown stage {name!r}; expected one of {STAGE_NAMES}")
    stage, out = _BY_NAME[name], Path(out)
    fp = fingerprint(out, stage, s)
    done = read_stage(out, name)
    if done is not None and done["fingerprint"] == fp and not force:
        say(f"[{name}] done before with the same settings and inputs ({done['seconds']:.0f} s then): skipped")
        return StageResult(name, True, 0.0, done["summary"])
    say(f"[{name}] " + ("running" if done is None else "settings or inputs changed: running again"))
    for folder in (*OUTPUTS[name], f"stages/{name}"):
        shutil.rmtree(out / folder, ignore_errors=True)
    t0 = time.perf_counter()
    summary = stage.run(out, s)
    seconds = time.perf_counter() - t0
    stage_dir(out, name).mkdir(parents=True, exist_ok=True)
    record = {"fingerprint": fp, "seconds": seconds, "summary": summary, "settings": _jsonable(stage.settings(s))}
    (stage_dir(out, name) / STAGE_FILE).write_text(json.dumps(record, indent=1, default=str))
    say(f"[{name}] done in {seconds:.0f} s: {json.dumps(summary, default=str)[:200]}")
    return StageResult(name, False, seconds, summary)


def run_all(out: Path, s: E2ESettings, stages: tuple[str, ...] = STAGE_NAMES, force: bool = False, say=print):
    """Run `stages` in pipeline order; returns their results."""
    unknown = [n for n in stages if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; expected some of {STAGE_NAMES}")
    return [run_stage(out, n, s, force, say) for n in STAGE_NAMES if n in stages]
