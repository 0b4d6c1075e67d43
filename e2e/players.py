"""Scripted players that read the game's state from the console RAM and play well enough to be worth imitating.

They are the "streamers" of the end-to-end run: each frame they look at the RAM (where the ball and the paddle
are), choose a gamepad state, and that state is both what the game receives and what the overlay shows. The RAM
addresses (AtariARI's annotations) and the aim offsets were found by experiment against ale-py's ROMs and are
checked in tests/test_e2e_players.py: each player beats random play on its own game.

Atari mapping (see `sim_bridge.ale_env`): D-pad left/right are the joystick's LEFT/RIGHT, the south face button is
FIRE. In Pong the joystick's RIGHT moves the player's paddle *up* and LEFT moves it down.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from nitrogen_jax.actions import STANDARD_BUTTONS, Gamepad


def pad_of(*buttons: str) -> Gamepad:
    """A one-frame gamepad with `buttons` pressed, sticks centred."""
    pad = Gamepad.zeros(1)
    for b in buttons:
        pad.buttons[0, STANDARD_BUTTONS.index(b)] = True
    return pad


class Player(Protocol):
    game: str  # the `make_env` spec it plays

    def act(self, ram: np.ndarray, frame: int) -> Gamepad:
        """The one-frame gamepad state to hold for the next game frame."""
        ...


@dataclasses.dataclass
class PongPlayer:
    """Keeps the paddle's centre on the ball's height (RAM 54 ball y, 51 paddle y, 0 = no ball in play)."""

    game: str = "ale:Pong"
    aim: int = 4  # paddle y + aim lines up with ball y; conceding nothing over 3000 frames for aim in [0, 12]
    deadband: int = 3

    def act(self, ram: np.ndarray, frame: int) -> Gamepad:
        ball, paddle = int(ram[54]), int(ram[51])
        if ball == 0:
            return pad_of()
        d = ball - (paddle + self.aim)
        if d > self.deadband:
            return pad_of("dpad_left")  # paddle down
        if d < -self.deadband:
            return pad_of("dpad_right")  # paddle up
        return pad_of()


@dataclasses.dataclass
class BreakoutPlayer:
    """Holds FIRE while no ball is in play (RAM 101 ball y = 0: the press that follows a lost ball serves), else
    moves the paddle towards the ball (RAM 99 ball x, 72 paddle x).

    Every label is then a function of what the frame shows: no ball -> FIRE, ball left of the paddle's aim ->
    left, right of it -> right. Earlier versions tapped FIRE (half the ball-less frames said "nothing") and moved
    only when the ball was 8 px off (a "nothing" class whose edges were 1-2 pixels at 128x128); the policy learned
    neither. This one plays as well: 22 bricks and 1 life lost in 3000 frames (deadband 8: 21 and 1).
    """

    game: str = "ale:Breakout"
    aim: int = 8  # paddle x + aim lines up with ball x
    deadband: int = 0  # move unless the ball is within this many pixels of the aim

    def act(self, ram: np.ndarray, frame: int) -> Gamepad:
        ball_x, ball_y, paddle = int(ram[99]), int(ram[101]), int(ram[72])
        if ball_y == 0:
            return pad_of("south")
        d = ball_x - (paddle + self.aim)
        if d > self.deadband:
            return pad_of("dpad_right")
        if d < -self.deadband:
            return pad_of("dpad_left")
        return pad_of()


@dataclasses.dataclass
class BoxingPlayer:
    """Keeps its boxer `aim` units above the opponent and at punching distance, and holds FIRE while there
    (RAM 32/33 player/opponent x, 34/35 their y; 18 is the player's score).

    Every label follows from the frame, and from two large figures rather than a 1-2 pixel ball: the vertical
    move from their heights, the horizontal one from their distance, FIRE from both. Lined up level (aim 0) the
    two block each other and nobody scores; 12 units above, the player lands 49 punches to the opponent's 5 in
    20 s (37 to 6 after a 37-frame delay); random input lands 1-4.
    """

    game: str = "ale:Boxing"
    aim: int = 12  # opponent y - player y to hold
    deadband: int = 2  # move vertically when more than this off the aim
    reach: int = 28  # close in horizontally while farther apart than this
    punch_band: int = 8  # FIRE while within this of the aim vertically and within reach + 2 horizontally

    def act(self, ram: np.ndarray, frame: int) -> Gamepad:
        dx, dy = int(ram[33]) - int(ram[32]), int(ram[35]) - int(ram[34]) - self.aim
        buttons = []
        if dy > self.deadband:
            buttons.append("dpad_down")
        elif dy < -self.deadband:
            buttons.append("dpad_up")
        if abs(dx) > self.reach:
            buttons.append("dpad_right" if dx > 0 else "dpad_left")
        if abs(dy) <= self.punch_band and abs(dx) <= self.reach + 2:
            buttons.append("south")
        return pad_of(*buttons)


@dataclasses.dataclass
class RandomPlayer:
    """The counterpart every scripted player must beat: one of `choices` (button sets) uniformly, held for a few
    frames like a person mashing."""

    game: str
    choices: tuple[tuple[str, ...], ...] = ((), ("south",), ("dpad_left",), ("dpad_right",))
    seed: int = 0
    hold: tuple[int, int] = (2, 12)

    def __post_init__(self):
        self._rng = np.random.default_rng(self.seed)
        self._held, self._left = pad_of(), 0

    def act(self, ram: np.ndarray, frame: int) -> Gamepad:
        if self._left <= 0:
            self._held = pad_of(*self.choices[self._rng.integers(len(self.choices))])
            self._left = int(self._rng.integers(*self.hold))
        self._left -= 1
        return self._held


PLAYERS: dict[str, type] = {"ale:Pong": PongPlayer, "ale:Breakout": BreakoutPlayer, "ale:Boxing": BoxingPlayer}


def make_player(game: str) -> Player:
    """'ale:Breakout' -> its scripted player."""
    if game not in PLAYERS:
        raise ValueError(f"no scripted player for {game!r}; expected one of {sorted(PLAYERS)}")
    return PLAYERS[game]()
