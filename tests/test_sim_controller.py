"""Gamepad decoding: chunks of either layout -> standard states -> virtual controller reports; agents."""

import jax
import numpy as np
import pytest

from nitrogen_jax.actions import RELEASE_LAYOUT, SEED_LAYOUT, STANDARD_BUTTONS, Gamepad
from nitrogen_jax.sim_bridge.agent import PolicyAgent, RandomAgent, check_temperature
from nitrogen_jax.sim_bridge.controller import FAMILIES, mask_menu, stick_to_int16, to_controller
from tests.sim_support import tiny_policy


def _pad(pressed=(), j_left=(0.0, 0.0), j_right=(0.0, 0.0)) -> Gamepad:
    buttons = np.zeros((1, len(STANDARD_BUTTONS)), bool)
    for name in pressed:
        buttons[0, STANDARD_BUTTONS.index(name)] = True
    return Gamepad(buttons, np.array([j_left]), np.array([j_right]))


def test_sticks_are_int16_with_y_flipped():
    v = stick_to_int16(np.array([[1.0, 1.0], [-1.0, -1.0], [0.5, -0.25], [2.0, -3.0]]))
    assert v.dtype == np.int16
    np.testing.assert_array_equal(v, [[32767, -32767], [-32767, 32767], [16383, 8191], [32767, 32767]])


@pytest.mark.parametrize("layout", [RELEASE_LAYOUT, SEED_LAYOUT])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_chunk_of_any_layout_decodes_to_each_family(layout, family):
    pad = _pad(("south", "right_trigger", "dpad_left", "start", "back"), j_left=(0.5, 1.0), j_right=(-1.0, 0.0))
    state = to_controller(layout.decode(layout.encode(pad)), family).frame(0)
    native = FAMILIES[family]
    assert state["buttons"][native["south"]] and state["buttons"][native["dpad_left"]]
    assert not state["buttons"][native["east"]]
    assert not state["buttons"][native["start"]] and not state["buttons"][native["back"]]  # menus masked
    assert state["left_stick"] == (16383, -32767) and state["right_stick"] == (-32767, 0)
    triggers = [v for k, v in state.items() if k not in ("buttons", "left_stick", "right_stick")]
    assert triggers == [0, 255]


def test_menu_buttons_pass_only_when_allowed():
    pad = _pad(("start", "guide", "back", "north"))
    assert mask_menu(pad).pressed(0) == ["north"]
    assert set(mask_menu(pad, allow_menu=True).pressed(0)) == {"start", "guide", "back", "north"}
    assert to_controller(pad, "xbox_one", allow_menu=True).frame(0)["buttons"]["XBOX"]


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="nintendo.*generic"):
        to_controller(_pad(), "nintendo")


def test_policy_agent_samples_at_its_temperature():
    for bad in (0.4, 1.01, 2.0):
        with pytest.raises(ValueError, match="temperature"):
            check_temperature(bad)
    policy = tiny_policy()
    frames = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    pads = PolicyAgent(policy, temperature=0.5, seed=1).act(frames)
    assert len(pads) == 2 and all(len(p) == policy.config.action_horizon for p in pads)
    # the agent's draw is exactly the policy's sample at that temperature (decoded, menus released)
    _, rng = jax.random.split(jax.random.key(1))
    for temperature, expect_same in ((0.5, True), (1.0, False)):
        ref = mask_menu(
            policy.config.layout.decode(np.asarray(policy.sample(frames, rng=rng, temperature=temperature))[1])
        )
        same = all(np.array_equal(getattr(ref, f), getattr(pads[1], f)) for f in ("buttons", "j_left", "j_right"))
        assert same == expect_same


def test_random_agent_is_seeded_and_masks_menus():
    a, b = RandomAgent(seed=4).act(np.zeros((3, 1))), RandomAgent(seed=4).act(np.zeros((3, 1)))
    np.testing.assert_array_equal(a[2].buttons, b[2].buttons)
    assert not any(p.button("start").any() for p in a)
    assert 0.3 < np.mean([p.buttons.mean() for p in a]) < 0.6
