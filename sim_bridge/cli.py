"""Sim bridge subcommands: `play` (a policy on a real game, recorded), `serve` (the release's protocol), `eval`."""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import signal
import threading
import time


def _policy_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--policy", help="a Policy directory (from `convert` or training)")
    src.add_argument("--preset", help="random weights of a preset (tiny, seed, nitrogen-500m): for smoke tests")
    p.add_argument("--temperature", type=float, default=1.0, help="scale of the initial noise, 0.5-1.0 (default 1.0)")
    p.add_argument("--steps", type=int, default=None, help="Euler steps (default: the config's)")
    p.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default=None)
    p.add_argument("--seed", type=int, default=0)


def _load_policy(args):
    from nitrogen_jax.policy import Policy

    overrides = {"compute_dtype": args.compute_dtype} if args.compute_dtype else {}
    if args.policy:
        return Policy.load(args.policy, **overrides), args.policy
    return Policy.init(args.preset, seed=args.seed, **overrides), f"preset {args.preset} (random weights)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("play", help="play a game frame by frame with a policy; record video + actions (dataset layout)")
    _policy_args(p)
    p.add_argument("--env", required=True, help="retro:Airstriker-Genesis or ale:<Game> (e.g. ale:Breakout)")
    p.add_argument("--frames", type=int, default=3600, help="frames to play (60 per second; default 3600)")
    p.add_argument("--execute", type=int, default=None, help="execute the first k actions of each chunk (default all)")
    p.add_argument("--allow-menu", action="store_true", help="let the policy press START / GUIDE / BACK")
    p.add_argument("--out", default="runs/play", help="output folder (videos/ and actions/)")
    p.add_argument("--video-id", default=None, help="recording name (default: game and time)")
    p.add_argument("--visualize", action="store_true", help="also write an action-visualiser video")
    p.add_argument("--no-record", action="store_true", help="play without writing anything")
    p.set_defaults(func=_play)

    p = sub.add_parser("serve", help="serve a policy over the release's ZeroMQ protocol (pickle or msgpack)")
    _policy_args(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=5555)
    p.add_argument("--max-message-mb", type=float, default=32.0, help="larger requests get an error reply")
    p.add_argument("--codec", choices=("both", "pickle", "msgpack"), default="both",
                   help="message formats accepted (pickle is read through a whitelist either way)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("eval", help="success rates on the task suite, beside a random-input baseline; markdown report")
    _policy_args(p)
    p.add_argument("--tasks", default="all", help="'all', a category (combat, navigation, game-specific) or task names")
    p.add_argument("--rollouts", type=int, default=10, help="rollouts per task and agent (default 10)")
    p.add_argument("--execute", type=int, default=None, help="execute the first k actions of each chunk (default all)")
    p.add_argument("--max-frames", type=int, default=None, help="cap every task's time limit (quick smoke runs)")
    p.add_argument("--no-baseline", action="store_true", help="skip the random-input baseline")
    p.add_argument("--out", default="runs/eval", help="report folder")
    p.set_defaults(func=_eval)


def _play(args) -> int:
    from nitrogen_jax.sim_bridge.agent import PolicyAgent
    from nitrogen_jax.sim_bridge.env import make_env
    from nitrogen_jax.sim_bridge.play import play
    from nitrogen_jax.sim_bridge.recorder import SessionRecorder

    env = make_env(args.env)  # a bad spec fails before the model is loaded
    policy, source = _load_policy(args)
    agent = PolicyAgent(policy, args.temperature, args.allow_menu, args.steps, args.seed)
    with env:
        recorder = None
        if not args.no_record:
            video_id = args.video_id or f"{env.game}_{datetime.datetime.now():%Y%m%d_%H%M%S}"
            recorder = SessionRecorder(args.out, video_id, env.game, visualize=args.visualize)
        print(f"{policy} from {source}\nplaying {env.spec_name} for {args.frames} frames")
        result = play(env, agent, args.frames, args.execute, recorder, seed=args.seed)
        chunks = recorder.close() if recorder else []
    print(f"{result.frames} frames in {result.seconds:.1f} s ({result.fps:.0f} fps; predicting {result.agent_seconds:.1f} s "
          f"for {result.predictions} chunks), {result.episodes} episode(s), reward {result.total_reward:g}")
    if recorder:
        print(f"video: {recorder.video_path}\nlabels: {len(chunks)} chunk(s) under {chunks[0].parent}")
        if recorder.actions_video_path:
            print(f"action visualiser: {recorder.actions_video_path}")
    return 0


def _serve(args) -> int:
    from nitrogen_jax.sim_bridge.server import PolicyServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    policy, source = _load_policy(args)
    codecs = ("pickle", "msgpack") if args.codec == "both" else (args.codec,)
    t0 = time.perf_counter()
    server = PolicyServer(policy, temperature=args.temperature, num_steps=args.steps, seed=args.seed,
                          max_message_bytes=int(args.max_message_mb * (1 << 20)), codecs=codecs, source=source)
    endpoint = server.bind(args.host, args.port)
    print(f"{policy} from {source}\nwarm in {time.perf_counter() - t0:.1f} s; serving {'/'.join(codecs)} on {endpoint}",
          flush=True)
    stop = threading.Event()  # SIGINT / SIGTERM finish the request in hand, then stop
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.serve(stop)
    finally:
        server.close()
    print(f"served {server.requests} requests ({server.errors} error replies, {server.dropped} dropped)")
    return 0


def _eval(args) -> int:
    from nitrogen_jax.sim_bridge.agent import PolicyAgent, RandomAgent
    from nitrogen_jax.sim_bridge.evaluate import evaluate, success_rates
    from nitrogen_jax.sim_bridge.report import write_report
    from nitrogen_jax.sim_bridge.tasks import select_tasks

    tasks = select_tasks(args.tasks)
    if args.max_frames:
        tasks = [dataclasses.replace(t, time_limit=min(t.time_limit, args.max_frames)) for t in tasks]
    policy, source = _load_policy(args)
    agents = [PolicyAgent(policy, args.temperature, num_steps=args.steps, seed=args.seed)]
    if not args.no_baseline:
        agents.append(RandomAgent(policy.config.action_horizon, seed=args.seed))
    t0 = time.perf_counter()
    results = evaluate(tasks, agents, args.rollouts, args.execute)
    header = {"policy": f"{policy} from {source}", "temperature": args.temperature,
              "execute": args.execute or "whole chunk", "rollouts per task and agent": args.rollouts,
              "date": f"{datetime.datetime.now():%Y-%m-%d %H:%M}", "wall time": f"{time.perf_counter() - t0:.0f} s"}
    path = write_report(results, tasks, args.out, header)
    rates = success_rates(results, "category")
    for (category, agent), rate in sorted(rates.items()):
        print(f"{category:>14}  {agent:>7}  {rate}")
    print(f"report: {path}")
    return 0
