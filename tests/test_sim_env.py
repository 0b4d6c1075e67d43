"""Frame-stepped environments on the real emulators: spaces, one frame per step, native mappings, states."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from nitrogen_jax.actions import STANDARD_BUTTONS, Gamepad
from nitrogen_jax.sim_bridge.env import as_gamepad
from nitrogen_jax.sim_bridge.games import make_env


def _pad(*pressed, j_left=(0.0, 0.0)) -> Gamepad:
    buttons = np.zeros((1, len(STANDARD_BUTTONS)), bool)
    for name in pressed:
        buttons[0, STANDARD_BUTTONS.index(name)] = True
    return Gamepad(buttons, np.array([j_left]), np.zeros((1, 2)))


@pytest.mark.parametrize("spec,native_hw", [("ale:Breakout", (210, 160)), ("retro:Airstriker-Genesis", (224, 320))])
def test_observations_spaces_and_state_round_trip(spec, native_hw):
    with make_env(spec) as env:
        check_env(env, skip_render_check=True)  # Gymnasium's own conformance checks
        obs, info = env.reset(seed=0)
        assert obs.shape == (256, 256, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
        assert env.render().shape == (*native_hw, 3)
        assert info, "reset reports the game's variables"
        for _ in range(30):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.frame_number == 30
        saved, ram = env.save_state(), env.ram().copy()
        frames_after = []
        for _ in range(40):
            env.step(_pad("south", j_left=(1.0, 0.0)))
            frames_after.append(env.render().copy())
        assert not np.array_equal(env.ram(), ram)
        env.load_state(saved)
        np.testing.assert_array_equal(env.ram(), ram)
        for i in range(40):  # the same inputs from the same state replay the same frames
            env.step(_pad("south", j_left=(1.0, 0.0)))
            np.testing.assert_array_equal(env.render(), frames_after[i])


def test_turn_based_nothing_runs_between_steps():
    with make_env("ale:Pong") as env:
        env.reset(seed=0)
        for _ in range(100):
            env.step(_pad())
        ram, frame = env.ram().copy(), env.render().copy()
        import time

        time.sleep(0.2)  # "thinking" time: the emulator must not advance
        np.testing.assert_array_equal(env.ram(), ram)
        np.testing.assert_array_equal(env.render(), frame)


def test_ale_mapping_covers_the_joystick():
    from nitrogen_jax.sim_bridge.ale_env import AleGamepadEnv

    with make_env("ale:Breakout") as env:
        assert isinstance(env, AleGamepadEnv)
        meaning = env._env.get_action_meanings()
        assert meaning[env.native_action(_pad())] == "NOOP"
        assert meaning[env.native_action(_pad("west"))] == "FIRE"
        assert meaning[env.native_action(_pad("dpad_up", "dpad_left"))] == "UPLEFT"
        assert (
            meaning[
                env.native_action(
                    _pad(
                        j_left=(0.9, 0.8),
                    )
                )
            ]
            == "DOWNRIGHT"
        )  # y is positive down
        assert meaning[env.native_action(_pad("north", j_left=(0.2, -0.2)))] == "FIRE"  # inside the dead zone
        assert meaning[env.native_action(_pad("dpad_left", "dpad_right", "south"))] == "FIRE"  # opposites cancel
        assert meaning[env.native_action(_pad("dpad_down", "east"))] == "DOWNFIRE"


def test_ale_inputs_move_the_paddle():
    """The mapping reaches the game: holding right moves Breakout's paddle right (RAM 72 is its x)."""
    with make_env("ale:Breakout") as env:
        env.reset(seed=0)
        x0 = int(env.ram()[72])
        for _ in range(30):
            env.step(_pad("dpad_right"))
        assert int(env.ram()[72]) > x0 + 10


def test_retro_genesis_mapping():
    from nitrogen_jax.sim_bridge.retro_env import RetroGamepadEnv

    with make_env("retro:Airstriker-Genesis") as env:
        assert isinstance(env, RetroGamepadEnv)
        names = env._native

        def held(pad):
            return {n for n, b in zip(names, env.native_action(pad), strict=True) if b}

        assert held(_pad("west", "south", "east")) == {"A", "B", "C"}
        assert held(_pad("left_shoulder", "north", "right_shoulder")) == {"X", "Y", "Z"}
        assert held(_pad("start", "back")) == {"START", "MODE"}
        assert held(_pad(j_left=(-1.0, -1.0))) == {"LEFT", "UP"}
        assert held(_pad("guide", "left_trigger", "right_thumb")) == set()


def test_bad_specs_and_actions_are_named():
    with pytest.raises(ValueError, match="retro:<Game>"):
        make_env("Breakout")
    with pytest.raises(ValueError, match="NotAGame"):
        make_env("ale:NotAGame")
    with pytest.raises(ValueError, match="one frame"):
        as_gamepad(Gamepad.zeros(2))
    with pytest.raises(ValueError, match="buttons, j_left, j_right"):
        as_gamepad({"buttons": np.zeros(17)})
