"""The scripted players, on the real emulator: each beats random play on its own game."""

import numpy as np

from nitrogen_jax.e2e.players import BreakoutPlayer, PongPlayer, RandomPlayer, make_player
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
