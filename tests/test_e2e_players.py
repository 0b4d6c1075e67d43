"""The scripted players, on the real emulator: each beats random play on its own game."""

import numpy as np

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.e2e.players import BoxingPlayer, BreakoutPlayer, PongPlayer, RandomPlayer, make_player, pad_of
from nitrogen_jax.sim_bridge.games import make_env

FRAMES = 1500


def play(player, frames=FRAMES, seed=0):
    """(points won, points lost or lives lost) over `frames` frames, resetting after game over."""
    won = lost = 0
    with make_env(player.game) as env:
        _, info = env.reset(seed=seed)
        lives = info.get("lives", 0)
        for i in range(frames):
            _, reward, terminated, truncated, info = env.step(player.act(env.ram(), i))
            won += reward > 0
            lost += reward < 0 or info.get("lives", lives) < lives
            lives = info.get("lives", lives)
            if terminated or truncated:
                _, info = env.reset(seed=seed)
                lives = info.get("lives", 0)
    return int(won), int(lost)


def test_pong_player_concedes_fewer_points_than_random():
    _, lost = play(PongPlayer())
    _, random_lost = play(RandomPlayer("ale:Pong", choices=((), ("dpad_left",), ("dpad_right",))))
    assert lost <= 1 < random_lost, (lost, random_lost)


def test_breakout_player_breaks_more_bricks_and_loses_fewer_lives_than_random():
    won, lost = play(BreakoutPlayer())
    random_won, random_lost = play(RandomPlayer("ale:Breakout"))
    assert won >= 10 > random_won and lost < random_lost, (won, lost, random_won, random_lost)


def test_players_output_one_frame_pads_that_depend_on_the_ram():
    p = BreakoutPlayer()
    ram = np.zeros(128, np.uint8)
    ram[101], ram[72] = 100, 50  # a ball in play, the paddle at 50
    ram[99] = 50 + p.aim + 20
    assert p.act(ram, 0).button("dpad_right")[0]
    ram[99] = 50 + p.aim - 20
    assert p.act(ram, 0).button("dpad_left")[0]
    assert len(make_player("ale:Pong").act(ram, 0)) == 1


def test_unknown_game_is_named():
    import pytest

    with pytest.raises(ValueError, match="ale:Nope"):
        make_player("ale:Nope")


class PlayerAgent:
    """A scripted player as an evaluation agent (it reads the RAM of the env it is given, one action per chunk)."""

    name, horizon = "player", 1

    def __init__(self, player, env):
        self.player, self.env, self.frame = player, env, 0

    def act(self, frames):
        self.frame += 1
        return [self.player.act(self.env.ram(), self.frame)]


def test_breakout_break_3_needs_the_frame():
    """The task the e2e run is judged on: the RAM-reading player solves it, a constant action cannot serve."""
    from nitrogen_jax.sim_bridge.agent import ConstantAgent
    from nitrogen_jax.sim_bridge.evaluate import rollout
    from nitrogen_jax.sim_bridge.tasks import TASKS_BY_NAME

    task = TASKS_BY_NAME["breakout_break_3"]
    with make_env(task.env) as env:
        wins = [rollout(env, task, PlayerAgent(BreakoutPlayer(), env), i).success for i in range(3)]
        idle = rollout(env, task, ConstantAgent(Gamepad.zeros(1), 8), 0)
        right = rollout(env, task, ConstantAgent(pad_of("dpad_right", "south"), 8), 0)
    assert all(wins)
    assert not idle.success and not right.success


def test_boxing_land_10_needs_the_frame():
    """The RAM-reading boxer lands ten punches within the task's 20 s; holding its most useful inputs does not, nor
    does random input (seeded)."""
    from nitrogen_jax.sim_bridge.agent import ConstantAgent, RandomAgent
    from nitrogen_jax.sim_bridge.evaluate import rollout
    from nitrogen_jax.sim_bridge.tasks import TASKS_BY_NAME

    task = TASKS_BY_NAME["boxing_land_10"]
    with make_env(task.env) as env:
        wins = [rollout(env, task, PlayerAgent(BoxingPlayer(), env), i).success for i in range(2)]
        held = [
            rollout(env, task, ConstantAgent(pad_of(*b), 8), 0).success
            for b in (("south",), ("dpad_down", "south"), ("dpad_right", "south"))
        ]
        random = [rollout(env, task, RandomAgent(8, seed=i), i).success for i in range(2)]
    assert all(wins) and not any(held) and not any(random), (wins, held, random)


def test_boxing_player_moves_by_where_the_boxers_stand():
    p = BoxingPlayer()
    ram = np.zeros(128, np.uint8)
    ram[32], ram[34] = 30, 40  # the player
    ram[33], ram[35] = 30 + p.reach + 20, 40 + p.aim + 10  # the opponent: far to the right and lower
    assert p.act(ram, 0).pressed(0) == ["dpad_down", "dpad_right"]
    ram[33], ram[35] = 30 + p.reach, 40 + p.aim  # in reach and lined up: punch, stay
    assert p.act(ram, 0).pressed(0) == ["south"]
