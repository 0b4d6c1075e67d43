"""The evaluation harness on the real games: predicates that fire for scripted play, Wilson intervals, `eval`."""

import dataclasses
import json

import numpy as np
import pytest

from nitrogen_jax.actions import STANDARD_BUTTONS, Gamepad
from nitrogen_jax.cli import main
from nitrogen_jax.sim_bridge.evaluate import rollout, start_rollout, wilson
from nitrogen_jax.sim_bridge.games import make_env
from nitrogen_jax.sim_bridge.tasks import CATEGORIES, TASKS, TASKS_BY_NAME, StartState, select_tasks


class Scripted:
    """Plays a fixed cycle of button sets (one per frame): a stand-in for a skilled or an idle player."""

    name, horizon = "scripted", 18

    def __init__(self, *cycle):
        self.cycle = cycle or ((),)

    def act(self, frames):
        buttons = np.zeros((self.horizon, len(STANDARD_BUTTONS)), bool)
        for t in range(self.horizon):
            for name in self.cycle[t % len(self.cycle)]:
                buttons[t, STANDARD_BUTTONS.index(name)] = True
        return [Gamepad(buttons, np.zeros((self.horizon, 2)), np.zeros((self.horizon, 2))) for _ in frames]


def test_suite_covers_games_and_categories():
    assert len(TASKS) >= 8
    assert len({t.env for t in TASKS}) >= 3 and any(t.env.startswith("retro:") for t in TASKS)
    assert {t.category for t in TASKS} == set(CATEGORIES)
    assert [t.name for t in select_tasks("navigation")] == ["freeway_cross", "freeway_halfway", "mspacman_eat_30"]
    assert [t.name for t in select_tasks("pong_hold_serve, boxing_land_punch")] == [
        "pong_hold_serve",
        "boxing_land_punch",
    ]
    with pytest.raises(ValueError, match="unknown tasks.*nope"):
        select_tasks("freeway_cross,nope")
    with pytest.raises(ValueError, match="category"):
        dataclasses.replace(TASKS[0], category="puzzle")


@pytest.mark.parametrize(
    "task,skilled,idle",
    [
        ("freeway_cross", Scripted(("dpad_up",)), Scripted()),
        ("freeway_halfway", Scripted(("dpad_up",)), Scripted()),
        ("boxing_land_punch", Scripted(("south", "dpad_right"), ("dpad_right",)), Scripted()),
        ("airstriker_destroy_enemy", Scripted(*[("south",)] * 3, *[()] * 6), Scripted()),
    ],
)
def test_predicates_tell_skilled_play_from_idle_play(task, skilled, idle):
    task = TASKS_BY_NAME[task]
    with make_env(task.env) as env:
        win, lose = rollout(env, task, skilled, 0), rollout(env, task, idle, 0)
    assert win.success and win.outcome == "success" and win.frames < task.time_limit
    assert not lose.success and lose.outcome == "time limit" and lose.frames == task.time_limit


def test_survive_tasks_fail_when_the_predicate_breaks():
    task = TASKS_BY_NAME["pong_hold_serve"]
    with make_env(task.env) as env:
        r = rollout(env, task, Scripted(), 0)
    assert not r.success and r.outcome == "predicate failed" and r.reward == -1.0 and r.frames < task.time_limit


def test_start_from_a_saved_emulator_state(tmp_path):
    with make_env("ale:Freeway") as env:
        env.reset(seed=0)
        up = Scripted(("dpad_up",)).act([None])[0][0]
        for _ in range(60):
            env.step(up)
        saved_ram = env.ram().copy()
        state = tmp_path / "freeway_up60.state"
        state.write_bytes(env.save_state())
        task = dataclasses.replace(TASKS_BY_NAME["freeway_halfway"], start=StartState(seed=0, state_file=str(state)))
        start_rollout(env, task, 0)
        np.testing.assert_array_equal(env.ram(), saved_ram)
        assert env.ram()[14] > 40  # the chicken starts where the state left it, not at the kerb
        # from there the idle player still fails, the climbing one arrives sooner than from the kerb
        assert (
            rollout(env, task, Scripted(("dpad_up",)), 0).frames
            < rollout(env, TASKS_BY_NAME["freeway_halfway"], Scripted(("dpad_up",)), 0).frames
        )
    with pytest.raises(FileNotFoundError, match="missing.state"):
        dataclasses.replace(task, start=StartState(state_file=str(tmp_path / "missing.state")))


def test_wilson_interval():
    r = wilson(5, 10)
    assert (round(r.low, 4), round(r.high, 4)) == (0.2366, 0.7634)
    r = wilson(0, 10)
    assert r.low == 0.0 and round(r.high, 4) == 0.2775 and str(r) == "0% [0%, 28%] (0/10)"
    assert wilson(10, 10).high == pytest.approx(1.0)


def test_eval_command_on_every_task(tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--preset", "tiny", "--rollouts", "2", "--max-frames", "90", "--out", str(out)]) == 0
    rollouts = json.loads((out / "rollouts.json").read_text())
    assert len(rollouts) == len(TASKS) * 2 * 2
    assert {r["agent"] for r in rollouts} == {"policy", "random"}
    assert all(r["frames"] <= 90 for r in rollouts)
    report = (out / "report.md").read_text()
    for t in TASKS:
        assert f"| {t.name} |" in report
    for c in CATEGORIES:
        assert f"| {c} |" in report
    for png in ("success_by_task.png", "success_by_category.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_policy_agent_squashes_environment_frames_to_a_smaller_policy():
    """Environments hand out 256x256 frames; a 64-pixel policy (the e2e job trains at 128) still plays them."""
    import dataclasses

    from nitrogen_jax.config import NitroGenConfig
    from nitrogen_jax.policy import Policy
    from nitrogen_jax.sim_bridge.agent import PolicyAgent
    from nitrogen_jax.sim_bridge.games import make_env

    tiny = Policy.init("tiny").config
    vision = dataclasses.replace(tiny.vision, image_size=64, patch_size=16)
    config: NitroGenConfig = tiny.replace(vision=vision, context_len=vision.num_patches)
    agent = PolicyAgent(Policy(config, Policy.init(config).params), seed=0)
    with make_env("ale:Breakout") as env:
        obs, _ = env.reset(seed=0)
    assert obs.shape == (256, 256, 3)
    (chunk,) = agent.act(obs[None])
    assert len(chunk) == config.action_horizon
