"""Sim bridge commands: `play` (a policy on a real game, recorded), `serve` (the release's protocol), `eval`."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import tyro

from nitrogen_jax.commands import PolicySource


@dataclasses.dataclass(frozen=True, kw_only=True)
class PolicyRunArgs:
    """A policy and how it samples: what play, serve and eval share."""

    source: Annotated[PolicySource, tyro.conf.arg(name="")] = PolicySource()
    temperature: float = 1.0
    """Scale of the initial noise, 0.5-1.0."""
    euler_steps: int | None = None
    """Euler steps of the sampler (default: the config's num_steps)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlayArgs(PolicyRunArgs):
    """Play a game frame by frame with a policy; record the video and the actions in the dataset layout."""

    env: str
    """The game: retro:Airstriker-Genesis or ale:<Game> (e.g. ale:Breakout)."""
    frames: int = 3600
    """Frames to play (60 per second)."""
    execute: int | None = None
    """Execute the first k actions of each chunk (default: all)."""
    allow_menu: bool = False
    """Let the policy press START / GUIDE / BACK."""
    out: Path = Path("runs/play")
    """Output folder (videos/ and actions/)."""
    video_id: str | None = None
    """Recording name (default: game and time)."""
    visualize: bool = False
    """Also write an action-visualiser video."""
    record: bool = True
    """Write the video and labels (--no-record only plays)."""

    def run(self) -> int:
        from nitrogen_jax.sim_bridge.agent import PolicyAgent
        from nitrogen_jax.sim_bridge.games import make_env
        from nitrogen_jax.sim_bridge.play import play
        from nitrogen_jax.sim_bridge.recorder import SessionRecorder

        env = make_env(self.env)  # a bad spec fails before the model is loaded
        policy, source = self.source.load()
        agent = PolicyAgent(policy, self.temperature, self.allow_menu, self.euler_steps, self.source.seed)
        with env:
            recorder = None
            if self.record:
                video_id = self.video_id or f"{env.game}_{datetime.datetime.now():%Y%m%d_%H%M%S}"
                recorder = SessionRecorder(self.out, video_id, env.game, visualize=self.visualize)
            print(f"{policy} from {source}\nplaying {env.spec_name} for {self.frames} frames")
            result = play(env, agent, self.frames, self.execute, recorder, seed=self.source.seed)
            chunks = recorder.close() if recorder else []
        print(
            f"{result.frames} frames in {result.seconds:.1f} s ({result.fps:.0f} fps; predicting "
            f"{result.agent_seconds:.1f} s for {result.predictions} chunks), {result.episodes} episode(s), "
            f"reward {result.total_reward:g}"
        )
        if recorder:
            print(f"video: {recorder.video_path}\nlabels: {len(chunks)} chunk(s) under {chunks[0].parent}")
            if recorder.actions_video_path:
                print(f"action visualiser: {recorder.actions_video_path}")
        return 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServeArgs(PolicyRunArgs):
    """Serve a policy over the release's ZeroMQ protocol (pickle or msgpack) to one or many game clients."""

    host: str = "127.0.0.1"
    """Interface to bind; anything but localhost prints a warning unless --curve-keys is given."""
    port: int = 5555
    """TCP port (the release's client uses 5555)."""
    max_message_mb: float = 32.0
    """Larger requests get an error reply; also the cap on a message's data once shared references are expanded."""
    codec: Literal["both", "pickle", "msgpack"] = "both"
    """Message formats accepted (pickle is never unpickled: a bounded reader reads it)."""
    max_batch: int = 16
    """Most predicts sampled in one batch (1 = sequential serving)."""
    batch_wait_ms: float = 3.0
    """How long the first predict waits for other active clients' predicts."""
    max_sessions: int = 256
    """Client sessions kept; the least recently seen is dropped beyond this."""
    curve_keys: Path | None = None
    """A directory from make_curve_keys: require ZeroMQ CURVE and admit only the clients whose keys are in it."""

    def build_server(self):
        from nitrogen_jax.sim_bridge.server import PolicyServer

        policy, source = self.source.load()
        return PolicyServer(
            policy,
            temperature=self.temperature,
            num_steps=self.euler_steps,
            seed=self.source.seed,
            max_message_bytes=int(self.max_message_mb * (1 << 20)),
            codecs=("pickle", "msgpack") if self.codec == "both" else (self.codec,),
            source=source,
            max_batch=self.max_batch,
            batch_wait_ms=self.batch_wait_ms,
            max_sessions=self.max_sessions,
            curve_keys=None if self.curve_keys is None else str(self.curve_keys),
        )

    def run(self) -> int:
        # Our own progress lines only: the root logger stays at WARNING, so orbax/absl INFO lines stay quiet.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        ours = logging.getLogger("nitrogen_jax")
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        t0 = time.perf_counter()
        server = self.build_server()
        endpoint = server.bind(self.host, self.port)
        print(
            f"{server.policy} from {server.source}\nwarm in {time.perf_counter() - t0:.1f} s; serving "
            f"{'/'.join(server.codecs)} on {endpoint}{' (CURVE)' if self.curve_keys else ''}, batches of up to "
            f"{server.sampler.max_batch}",
            flush=True,
        )
        stop = threading.Event()  # SIGINT / SIGTERM finish the batch in hand, then stop
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            server.serve(stop)
        finally:
            server.close()
        print(
            f"served {server.requests} requests in {server.batches} batches ({server.errors} error replies, "
            f"{server.dropped} dropped, {len(server.sessions)} sessions)"
        )
        return 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalArgs(PolicyRunArgs):
    """Success rates on the task suite, beside a random-input baseline; a markdown report."""

    tasks: str = "all"
    """'all', a category (combat, navigation, game-specific) or comma-separated task names."""
    rollouts: int = 10
    """Rollouts per task and agent."""
    execute: int | None = None
    """Execute the first k actions of each chunk (default: all)."""
    max_frames: int | None = None
    """Cap every task's time limit (quick smoke runs)."""
    baseline: bool = True
    """Also run the random-input baseline."""
    constant_from: Path | None = None
    """A labels folder (public layout): also run the constant baseline holding its most frequent action."""
    constant: tuple[str, ...] | None = None
    """Buttons the constant baseline holds (e.g. --constant south dpad_left); overrides --constant-from."""
    out: Path = Path("runs/eval")
    """Report folder."""

    def run(self) -> int:
        from nitrogen_jax.sim_bridge.agent import ConstantAgent, PolicyAgent, RandomAgent, constant_pad
        from nitrogen_jax.sim_bridge.evaluate import evaluate, success_rates
        from nitrogen_jax.sim_bridge.report import write_report
        from nitrogen_jax.sim_bridge.tasks import select_tasks

        tasks = select_tasks(self.tasks)
        if self.max_frames:
            tasks = [dataclasses.replace(t, time_limit=min(t.time_limit, self.max_frames)) for t in tasks]
        policy, source = self.source.load()
        agents: list[PolicyAgent | RandomAgent | ConstantAgent] = [
            PolicyAgent(policy, self.temperature, num_steps=self.euler_steps, seed=self.source.seed)
        ]
        if self.baseline:
            agents.append(RandomAgent(policy.config.action_horizon, seed=self.source.seed))
        held = constant_pad(self.constant, self.constant_from)
        if held is not None:
            agents.append(ConstantAgent(held[0], policy.config.action_horizon))
        t0 = time.perf_counter()
        results = evaluate(tasks, agents, self.rollouts, self.execute)
        header = {
            "policy": f"{policy} from {source}",
            "temperature": self.temperature,
            "execute": self.execute or "whole chunk",
            "rollouts per task and agent": self.rollouts,
            "date": f"{datetime.datetime.now():%Y-%m-%d %H:%M}",
            "wall time": f"{time.perf_counter() - t0:.0f} s",
        }
        if held is not None:
            header["constant baseline"] = held[1]
        path = write_report(results, tasks, self.out, header)
        rates = success_rates(results, "category")
        for (category, agent), rate in sorted(rates.items()):
            print(f"{category:>14}  {agent:>7}  {rate}")
        print(f"report: {path}")
        return 0
