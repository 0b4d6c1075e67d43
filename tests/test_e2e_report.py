"""The report page renders with all its parts from real stage outputs: a short recording, the truth as labels,
an (untrained) policy evaluated for real beside both baselines, a loss log."""

import dataclasses

import pytest

from nitrogen_jax.e2e.evaluation import evaluate_policy
from nitrogen_jax.e2e.record import RecordSettings
from nitrogen_jax.e2e.replay import gif_frame_count
from nitrogen_jax.e2e.report import verdict, write_report
from nitrogen_jax.e2e.settings import E2ESettings, EvalSettings
from nitrogen_jax.e2e.stages import run_all
from nitrogen_jax.policy import Policy
from nitrogen_jax.train.metrics import MetricWriter


@pytest.mark.slow  # ~70 s on 2 shared cores: a real evaluation and GIF
def test_report_has_every_part(tmp_path):
    s = E2ESettings(
        record=RecordSettings(videos_per_game=1, seconds=1.0, max_noop_start=0),
        eval=EvalSettings(rollouts=1, gif_frames=24),
    )
    run_all(tmp_path, s, ("record", "extract"), say=lambda _: None)
    Policy.init(s.model, seed=0).save(tmp_path / "train" / "policy")
    writer = MetricWriter(tmp_path / "train" / "logs")
    for step in range(1, 31):
        writer.write(step, {"loss": 1.0 / step})
    writer.close()
    summary = evaluate_policy(tmp_path / "train" / "policy", tmp_path / "extract" / "labels", tmp_path / "eval", s.eval)
    assert set(summary["boxing_land_10"]) == {"policy", "random", "constant"}

    page = write_report(tmp_path, s).read_text()
    for part in (
        "## Verdict",
        "| boxing_land_10 |",
        "## Extraction accuracy",
        "![training loss](loss.png)",
        "![policy playing ale:Boxing](policy.gif)",
        "## Stages",
        "constant = holds",
    ):
        assert part in page, part
    report_dir = tmp_path / "report"
    assert (report_dir / "loss.png").stat().st_size > 1000
    assert gif_frame_count(report_dir / "policy.gif") == 12  # every second frame of 24
    assert "constant" in (tmp_path / "eval" / "report.md").read_text()


def test_verdict_says_when_intervals_separate():
    def r(k, n, low, high):
        return {"successes": k, "trials": n, "rate": k / n, "low": low, "high": high}

    text = verdict("t", {"policy": r(9, 10, 0.6, 0.98), "random": r(0, 10, 0.0, 0.28), "constant": r(7, 10, 0.4, 0.9)})
    assert "beats random (intervals disjoint)" in text and "above constant but the intervals overlap" in text
    text = verdict("t", {"policy": r(1, 10, 0.02, 0.4), "constant": r(2, 10, 0.05, 0.5)})
    assert "does NOT beat constant" in text


def test_settings_fingerprint_fields_are_plain():
    assert dataclasses.asdict(E2ESettings())["train"]["num_steps"] > 0
