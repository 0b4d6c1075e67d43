"""Server overhead over an in-process `Policy.sample` on loopback, and the play loop's frames per second.

Latency rows: median and p90 milliseconds per 256x256 frame, in-process (`sample` + decode, what the server does
per request) and through `nitrogen-jax serve` in a separate process over tcp://127.0.0.1 with the pickle and the
msgpack client; overhead = round trip - in-process (goal: under 2 ms). Play rows: frames per second of the play
loop (emulator + resize + policy every k frames), with and without recording, beside the random agent (emulator
bound). CPU figures on a CPU machine; the server and the client share its cores.

    .venv/bin/python bench/serve_latency.py [--preset tiny] [--requests 200] [--frames 1800]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np


def percentiles(samples_s) -> tuple[float, float]:
    ms = np.asarray(samples_s) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 90))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def interleaved_latency(policy, endpoint: str, frame: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Seconds per request for in-process sampling and both clients, measured in turn so that drift in the shared
    CPU's speed hits all three alike."""
    import jax

    from nitrogen_jax.sim_bridge.client import PolicyClient

    rng = jax.random.key(0)

    def local():
        policy.config.layout.decode(np.asarray(policy.sample(frame[None], rng=rng))[0])

    clients = {codec: PolicyClient(endpoint, codec, timeout_s=300) for codec in ("pickle", "msgpack")}
    paths = {"in-process": local, **{c: (lambda c=c: clients[c].predict(frame)) for c in clients}}
    clients["pickle"].info()  # waits until the server is up and warm
    times = {k: [] for k in paths}
    for i in range(n + 5):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            fn()
            if i >= 5:
                times[name].append(time.perf_counter() - t0)
    for c in clients.values():
        c.close()
    return {k: np.asarray(v) for k, v in times.items()}


def play_fps(spec: str, agent, frames: int, execute: int | None, record: bool) -> float:
    from nitrogen_jax.sim_bridge.env import make_env
    from nitrogen_jax.sim_bridge.play import play
    from nitrogen_jax.sim_bridge.recorder import SessionRecorder

    with make_env(spec) as env, tempfile.TemporaryDirectory() as tmp:
        play(env, agent, 36, execute, None, progress=False)  # compile / warm
        recorder = SessionRecorder(tmp, "bench", env.game) if record else None
        result = play(env, agent, frames, execute, recorder, progress=False)
        if recorder:
            recorder.close()
    return result.fps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--frames", type=int, default=1800, help="frames per play-loop row")
    args = p.parse_args()

    import jax

    from nitrogen_jax.policy import Policy
    from nitrogen_jax.sim_bridge.agent import PolicyAgent, RandomAgent

    policy = Policy.init(args.preset)
    frame = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "nitrogen_jax.cli", "serve", "--preset", args.preset, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        times = interleaved_latency(policy, f"tcp://127.0.0.1:{port}", frame, args.requests)
    finally:
        server.terminate()
        server.wait(30)

    print(f"\n{policy} on {jax.devices()[0].platform} ({os.cpu_count()} cores), 256x256 frames, {args.requests} requests each")
    print(f"| {'path':<42} | median ms | p90 ms | overhead ms (median of paired differences) |")
    print(f"|{'-' * 44}|-----------|--------|--------------------------------------------|")
    names = {"in-process": "in-process Policy.sample + decode", "pickle": "serve round trip, pickle (release client)",
             "msgpack": "serve round trip, msgpack"}
    for key, name in names.items():
        med, p90 = percentiles(times[key])
        over = "" if key == "in-process" else f"{1e3 * np.median(times[key] - times['in-process']):+.2f}"
        print(f"| {name:<42} | {med:9.2f} | {p90:6.2f} | {over:>42} |")

    agent = PolicyAgent(policy)
    print(f"\nplay loop, {args.frames} frames per row (frames per second, 60 = real time)")
    print(f"| {'env':<26} | {'agent':<7} | {'execute':>7} | {'record':>6} | fps |")
    print(f"|{'-' * 28}|---------|---------|--------|-----|")
    for spec in ("ale:Breakout", "retro:Airstriker-Genesis"):
        for a, execute, record in ((agent, None, False), (agent, None, True), (agent, 6, False),
                                   (RandomAgent(policy.config.action_horizon), None, False)):
            fps = play_fps(spec, a, args.frames, execute, record)
            print(f"| {spec:<26} | {a.name:<7} | {execute or 'all':>7} | {'yes' if record else 'no':>6} | {fps:.0f} |")


if __name__ == "__main__":
    main()
