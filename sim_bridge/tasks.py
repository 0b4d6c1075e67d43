"""Evaluation tasks: a start state, a success predicate read from the game (RAM, info or reward), a time limit.

A task is either *reach* (success the first frame its predicate holds, failure at the time limit) or *survive*
(failure the first frame its predicate stops holding, success at the time limit). A game over fails both.
Categories follow the seed's benchmark: combat, navigation, game-specific. RAM addresses are the Atari
annotations used by AtariARI (Anand et al., 2019), checked against the games here (see tests/test_sim_eval.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

CATEGORIES = ("combat", "navigation", "game-specific")


@dataclasses.dataclass(frozen=True)
class Progress:
    """What a predicate sees: the game now and at the start of the rollout."""

    frame: int
    total_reward: float
    info: dict
    ram: np.ndarray
    start_info: dict
    start_ram: np.ndarray


@dataclasses.dataclass(frozen=True)
class Predicate:
    """A named test on `Progress`; `describe` is what reports print."""

    describe: str
    test: Callable[[Progress], bool]

    def __call__(self, p: Progress) -> bool:
        return bool(self.test(p))


def reward_at_least(x: float) -> Predicate:
    return Predicate(f"reward >= {x:g}", lambda p: p.total_reward >= x)


def ram_at_least(address: int, value: int) -> Predicate:
    return Predicate(f"RAM[{address}] >= {value}", lambda p: int(p.ram[address]) >= value)


def ram_rises(address: int, by: int) -> Predicate:
    return Predicate(
        f"RAM[{address}] rises by >= {by}", lambda p: int(p.ram[address]) - int(p.start_ram[address]) >= by
    )


def ram_falls(address: int, by: int) -> Predicate:
    return Predicate(
        f"RAM[{address}] falls by >= {by}", lambda p: int(p.start_ram[address]) - int(p.ram[address]) >= by
    )


def ram_unchanged(address: int) -> Predicate:
    return Predicate(f"RAM[{address}] unchanged", lambda p: p.ram[address] == p.start_ram[address])


def info_rises(key: str, by: float) -> Predicate:
    return Predicate(f"info[{key!r}] rises by >= {by:g}", lambda p: p.info[key] - p.start_info[key] >= by)


def info_kept(key: str) -> Predicate:
    return Predicate(f"info[{key!r}] >= its start", lambda p: p.info[key] >= p.start_info[key])


@dataclasses.dataclass(frozen=True)
class StartState:
    """seed: the emulator reset seed (rollout i uses seed + i); noop_frames: frames of released input after the
    reset (skips intros); state_file: an emulator state saved with `GamepadEnv.save_state`, loaded after that."""

    seed: int = 0
    noop_frames: int = 0
    state_file: str | None = None


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    env: str  # a `make_env` spec
    category: str
    description: str
    success: Predicate
    time_limit: int  # frames (60 per second)
    mode: str = "reach"  # or "survive"
    start: StartState = StartState()

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise ValueError(f"task {self.name}: category {self.category!r} is not one of {CATEGORIES}")
        if self.mode not in ("reach", "survive"):
            raise ValueError(f"task {self.name}: mode must be 'reach' or 'survive', got {self.mode!r}")
        if self.time_limit < 1:
            raise ValueError(f"task {self.name}: time_limit must be >= 1 frame, got {self.time_limit}")
        if self.start.state_file is not None and not Path(self.start.state_file).is_file():
            raise FileNotFoundError(f"task {self.name}: start state file {self.start.state_file} does not exist")


TASKS: tuple[Task, ...] = (
    Task(
        "airstriker_destroy_enemy",
        "retro:Airstriker-Genesis",
        "combat",
        "Shoot down one enemy (score +20) within 15 s of the level start.",
        info_rises("score", 20),
        time_limit=900,
    ),
    Task(
        "spaceinvaders_kill_3",
        "ale:SpaceInvaders",
        "combat",
        "Destroy three invaders (RAM 17 counts those left) within 15 s.",
        ram_falls(17, 3),
        time_limit=900,
    ),
    Task(
        "boxing_land_punch",
        "ale:Boxing",
        "combat",
        "Land a scoring punch (RAM 18 is the player's score) within 20 s.",
        ram_at_least(18, 1),
        time_limit=1200,
    ),
    Task(
        "boxing_land_10",
        "ale:Boxing",
        "combat",
        "Land ten scoring punches within 20 s: the boxer must line up with the opponent again and again (holding "
        "one input lands a few at most; so does random input).",
        ram_at_least(18, 10),
        time_limit=1200,
    ),
    Task(
        "freeway_cross",
        "ale:Freeway",
        "navigation",
        "Get the chicken across all ten lanes (RAM 103 is the score) within 20 s.",
        ram_at_least(103, 1),
        time_limit=1200,
    ),
    Task(
        "freeway_halfway",
        "ale:Freeway",
        "navigation",
        "Get the chicken past the median (RAM 14 is its height, 6 at the kerb) within 10 s.",
        ram_at_least(14, 90),
        time_limit=600,
    ),
    Task(
        "mspacman_eat_30",
        "ale:MsPacman",
        "navigation",
        "Eat 30 pellets (10 points each) within 25 s, finding a path through the maze.",
        reward_at_least(300),
        time_limit=1500,
    ),
    Task(
        "breakout_break_brick",
        "ale:Breakout",
        "game-specific",
        "Serve the ball and break a brick within 10 s.",
        reward_at_least(1),
        time_limit=600,
    ),
    Task(
        "breakout_break_3",
        "ale:Breakout",
        "game-specific",
        "Serve and break three bricks within 20 s: the paddle must meet the ball again and again (a constant "
        "action never serves or misses; random input rarely returns the ball three times).",
        reward_at_least(3),
        time_limit=1200,
    ),
    Task(
        "pong_hold_serve",
        "ale:Pong",
        "game-specific",
        "Concede no point for 8 s (RAM 13 is the opponent's score).",
        ram_unchanged(13),
        time_limit=480,
        mode="survive",
    ),
    Task(
        "airstriker_keep_lives",
        "retro:Airstriker-Genesis",
        "game-specific",
        "Lose no life for 10 s of the level.",
        info_kept("lives"),
        time_limit=600,
        mode="survive",
    ),
)
TASKS_BY_NAME = {t.name: t for t in TASKS}


def select_tasks(selection: str = "all") -> list[Task]:
    """'all', a category ('combat'), or comma-separated task names -> tasks."""
    if selection == "all":
        return list(TASKS)
    if selection in CATEGORIES:
        return [t for t in TASKS if t.category == selection]
    names = [s.strip() for s in selection.split(",") if s.strip()]
    unknown = [n for n in names if n not in TASKS_BY_NAME]
    if unknown or not names:
        raise ValueError(
            f"unknown tasks {unknown or selection!r}; expected 'all', a category {CATEGORIES} or names from "
            f"{sorted(TASKS_BY_NAME)}"
        )
    return [TASKS_BY_NAME[n] for n in names]
