"""The constant-action baseline: what it holds, where its action comes from, and the caveat it raises."""

import numpy as np
import pytest

from nitrogen_jax.actions import STANDARD_BUTTONS, Gamepad
from nitrogen_jax.data.layout import write_chunks
from nitrogen_jax.sim_bridge.agent import ConstantAgent, constant_pad, describe_pad, most_frequent_action
from nitrogen_jax.sim_bridge.evaluate import wilson
from nitrogen_jax.sim_bridge.report import baseline_caveats


def _labels(tmp_path, n=300):
    """Labels where dpad_left is held 60% of the rows, south 30%, nothing 10%."""
    pad = Gamepad.zeros(n)
    pad.buttons[: int(0.6 * n), STANDARD_BUTTONS.index("dpad_left")] = True
    pad.buttons[int(0.6 * n) : int(0.9 * n), STANDARD_BUTTONS.index("south")] = True
    write_chunks(tmp_path, "vid", pad, chunk_size=100)
    return tmp_path


def test_most_frequent_action_counts_rows_across_chunks(tmp_path):
    pad, share = most_frequent_action(_labels(tmp_path))
    assert describe_pad(pad) == "dpad_left" and share == pytest.approx(0.6)


def test_sticks_resting_a_hair_off_centre_are_one_state(tmp_path):
    """Read-off labels rest at +-0.001, not 0: all of it is "nothing pressed" (a rounded -0.0 once split it, and an
    e2e report named a state 27% frequent that the truth holds on 69% of rows)."""
    pad = Gamepad.zeros(200)
    pad.j_left[:, 0] = np.where(np.arange(200) % 2 == 0, -0.001, 0.001)
    pad.buttons[:40, STANDARD_BUTTONS.index("south")] = True
    write_chunks(tmp_path, "vid", pad, chunk_size=100)
    held, share = most_frequent_action(tmp_path)
    assert describe_pad(held) == "nothing" and share == pytest.approx(0.8)


def test_constant_agent_repeats_its_state_for_every_frame_and_step():
    pad = Gamepad.zeros(1)
    pad.buttons[0, STANDARD_BUTTONS.index("south")] = True
    agent = ConstantAgent(pad, horizon=5)
    chunks = agent.act(np.zeros((3, 256, 256, 3), np.uint8))
    assert len(chunks) == 3 and all(len(c) == 5 for c in chunks)
    assert chunks[1].button("south").all() and chunks[1].buttons.sum() == 5
    with pytest.raises(ValueError, match="one gamepad state"):
        ConstantAgent(Gamepad.zeros(2))


def test_constant_agent_masks_menu_buttons_unless_allowed():
    pad = Gamepad.zeros(1)
    pad.buttons[0, STANDARD_BUTTONS.index("start")] = True
    assert not ConstantAgent(pad, 2).act(np.zeros((1, 8, 8, 3)))[0].button("start").any()
    assert ConstantAgent(pad, 2, allow_menu=True).act(np.zeros((1, 8, 8, 3)))[0].button("start").all()


def test_constant_pad_from_buttons_or_labels(tmp_path):
    given = constant_pad(("south", "dpad_up"))
    assert given is not None
    pad, line = given
    assert set(describe_pad(pad).split("+")) == {"south", "dpad_up"} and "given" in line
    from_labels = constant_pad(None, _labels(tmp_path))
    assert from_labels is not None
    pad, line = from_labels
    assert describe_pad(pad) == "dpad_left" and "60%" in line
    assert constant_pad(None, None) is None
    with pytest.raises(ValueError, match="jump"):
        constant_pad(("jump",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no label chunks"):
        most_frequent_action(tmp_path / "empty")


def test_caveat_when_a_baseline_matches_or_overlaps_the_policy():
    rates = {
        ("a", "policy"): wilson(10, 10),
        ("a", "random"): wilson(0, 10),
        ("a", "constant"): wilson(10, 10),
        ("b", "policy"): wilson(6, 10),
        ("b", "random"): wilson(4, 10),
        ("b", "constant"): wilson(0, 10),
    }
    lines = baseline_caveats(rates, ["a", "b"], ["policy", "random", "constant"])
    assert len(lines) == 2
    assert "on a the constant baseline" in lines[0] and "matches or beats" in lines[0]
    assert "on b" in lines[1] and "random" in lines[1] and "overlap" in lines[1]


@pytest.mark.slow
def test_eval_command_runs_the_constant_baseline(tmp_path):
    from nitrogen_jax.cli import main

    out = tmp_path / "eval"
    args = ["eval", "--preset", "tiny", "--rollouts", "1", "--max-frames", "30", "--tasks", "breakout_break_brick"]
    assert main([*args, "--constant-from", str(_labels(tmp_path / "labels")), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "| policy | random | constant |" in report and "holds dpad_left, the most frequent action" in report
    assert "**caveat**" in report  # 30 frames: nobody breaks a brick, so the baselines match the policy
