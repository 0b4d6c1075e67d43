"""Server overhead over an in-process `Policy.sample` on loopback, and the play loop's frames per second.

Latency rows: median and p90 milliseconds per 256x256 frame, in-process (`sample` + decode, what the server does
per request) and through `nitrogen-jax serve` in a separate process over tcp://127.0.0.1 with the pickle and the
msgpack client; overhead = round trip - in-process (goal: under 2 ms). Play rows: frames per second of the play
loop (emulator + resize + policy every k frames), with and without recording, beside the random agent (emulator
bound). CPU figures on a CPU machine; the server and the client share its cores.

Concurrency rows (`--concurrency`): 1, 4 and 16 game clients (threads, one REQ socket each) against a server that
batches the requests arriving together (`--max-batch 16`) beside the same server sampling one request at a time
(`--max-batch 1`, sequential serving): per-request latency and aggregate chunks per second.

    .venv/bin/python bench/serve_latency.py [--preset tiny] [--requests 200] [--frames 1800]
    .venv/bin/python bench/serve_latency.py --concurrency [--clients 1,4,16] [--per-client 20]
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


def start_server(preset: str, port: int, max_batch: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "nitrogen_jax.cli",
        "serve",
        "--preset",
        preset,
        "--port",
        str(port),
        "--max-batch",
        str(max_batch),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())


def concurrent_clients(endpoint: str, clients: int, per_client: int, frame: np.ndarray) -> tuple[np.ndarray, float]:
    """(seconds per request, wall seconds): `clients` threads, each sending `per_client` predicts after a warm-up."""
    import threading

    from nitrogen_jax.sim_bridge.client import PolicyClient

    conns = [PolicyClient(endpoint, "pickle", timeout_s=600) for _ in range(clients)]
    for i, c in enumerate(conns):
        c.reset(seed=i)
        c.predict(frame)  # every session exists and the server is warm
    times: list[float] = []
    start = threading.Barrier(clients + 1)

    def game(c) -> None:
        start.wait()
        for _ in range(per_client):
            t0 = time.perf_counter()
            c.predict(frame)
            times.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=game, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return np.asarray(times), wall


def concurrency_table(preset: str, client_counts: list[int], per_client: int) -> None:
    import jax

    frame = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    rows = {}
    for mode, max_batch in (("sequential", 1), ("batched", max(client_counts))):
        port = free_port()
        server = start_server(preset, port, max_batch)
        try:
            for n in client_counts:
                rows[mode, n] = concurrent_clients(f"tcp://127.0.0.1:{port}", n, per_client, frame)
        finally:
            server.terminate()
            server.wait(30)
    print(
        f"\npreset {preset} on {jax.devices()[0].platform} ({os.cpu_count()} cores), 256x256 pickled frames, "
        f"{per_client} predicts per client"
    )
    print("| clients | sequential median ms | p90 ms | chunks/s | batched median ms | p90 ms | chunks/s | speed-up |")
    print("|--------:|---------------------:|-------:|---------:|------------------:|-------:|---------:|---------:|")
    for n in client_counts:
        cells, rates = [], []
        for mode in ("sequential", "batched"):
            times, wall = rows[mode, n]
            med, p90 = percentiles(times)
            rates.append(len(times) / wall)
            cells += [f"{med:.1f}", f"{p90:.1f}", f"{rates[-1]:.1f}"]
        print(
            f"| {n:7d} | {cells[0]:>20} | {cells[1]:>6} | {cells[2]:>8} | {cells[3]:>17} | {cells[4]:>6} | "
            f"{cells[5]:>8} | {rates[1] / rates[0]:7.2f}x |"
        )


def play_fps(spec: str, agent, frames: int, execute: int | None, record: bool) -> float:
    from nitrogen_jax.sim_bridge.games import make_env
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
    p.add_argument("--concurrency", action="store_true", help="only the many-clients table")
    p.add_argument("--clients", default="1,4,16", help="client counts for --concurrency")
    p.add_argument("--per-client", type=int, default=20, help="predicts per client for --concurrency")
    args = p.parse_args()
    if args.concurrency:
        concurrency_table(args.preset, [int(n) for n in args.clients.split(",")], args.per_client)
        return

    import jax

    from nitrogen_jax.policy import Policy
    from nitrogen_jax.sim_bridge.agent import PolicyAgent, RandomAgent

    policy = Policy.init(args.preset)
    frame = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "nitrogen_jax.cli", "serve", "--preset", args.preset, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    try:
        times = interleaved_latency(policy, f"tcp://127.0.0.1:{port}", frame, args.requests)
    finally:
        server.terminate()
        server.wait(30)

    print(
        f"\n{policy} on {jax.devices()[0].platform} ({os.cpu_count()} cores), 256x256 frames, "
        f"{args.requests} requests each"
    )
    print(f"| {'path':<42} | median ms | p90 ms | overhead ms (median of paired differences) |")
    print(f"|{'-' * 44}|-----------|--------|--------------------------------------------|")
    names = {
        "in-process": "in-process Policy.sample + decode",
        "pickle": "serve round trip, pickle (release client)",
        "msgpack": "serve round trip, msgpack",
    }
    for key, name in names.items():
        med, p90 = percentiles(times[key])
        over = "" if key == "in-process" else f"{1e3 * np.median(times[key] - times['in-process']):+.2f}"
        print(f"| {name:<42} | {med:9.2f} | {p90:6.2f} | {over:>42} |")

    agent = PolicyAgent(policy)
    print(f"\nplay loop, {args.frames} frames per row (frames per second, 60 = real time)")
    print(f"| {'env':<26} | {'agent':<7} | {'execute':>7} | {'record':>6} | fps |")
    print(f"|{'-' * 28}|---------|---------|--------|-----|")
    for spec in ("ale:Breakout", "retro:Airstriker-Genesis"):
        for a, execute, record in (
            (agent, None, False),
            (agent, None, True),
            (agent, 6, False),
            (RandomAgent(policy.config.action_horizon), None, False),
        ):
            fps = play_fps(spec, a, args.frames, execute, record)
            print(f"| {spec:<26} | {a.name:<7} | {execute or 'all':>7} | {'yes' if record else 'no':>6} | {fps:.0f} |")


if __name__ == "__main__":
    main()
