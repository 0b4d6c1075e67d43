"""A small end-to-end run through the `e2e` command's run(): every stage, the report, and a re-run that skips."""

import pytest

from nitrogen_jax.e2e.cli import E2EArgs, run
from nitrogen_jax.e2e.stage_record import read_stage
from nitrogen_jax.e2e.stages import STAGE_NAMES


@pytest.mark.slow  # a few minutes on 2 CPU cores: record, preprocess, 20 training steps, a real evaluation
def test_small_run_end_to_end_and_rerun_skips(tmp_path, capsys):
    args = E2EArgs(out=tmp_path, videos_per_game=1, seconds=4.0, train_steps=20, batch_size=8, rollouts=2)
    assert run(args) == 0
    for name in STAGE_NAMES:
        assert read_stage(tmp_path, name) is not None, name
    page = (tmp_path / "report" / "report.md").read_text()
    assert "## Verdict" in page and "policy.gif" in page and "loss.png" in page
    train = read_stage(tmp_path, "train")
    assert train is not None and train["summary"]["steps"] == 20
    capsys.readouterr()

    assert run(args) == 0
    assert "0 stage(s) ran" in capsys.readouterr().out

    assert (
        run(
            E2EArgs(
                out=tmp_path, stage="evaluate", videos_per_game=1, seconds=4.0, train_steps=20, batch_size=8, rollouts=3
            )
        )
        == 0
    )
    assert "1 stage(s) ran (evaluate)" in capsys.readouterr().out
