"""`nitrogen-jax serve`'s options as a frozen dataclass, and `run` that loads the policy and serves it until stopped."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from pathlib import Path

from nitrogen_jax.sim_bridge.server import DEFAULT_PORT, PolicyServer


@dataclasses.dataclass(frozen=True)
class ServeArgs:
    """Serve a policy over the release's ZeroMQ protocol (pickle or msgpack) to one or many game clients."""

    policy: str | None = None
    """a Policy directory (from `convert` or training); its path is what `info["ckpt_path"]` answers."""
    preset: str | None = None
    """random weights of a preset (tiny, seed, nitrogen-500m) instead of --policy: for smoke tests."""
    temperature: float = 1.0
    """scale of the initial noise, 0.5-1.0."""
    steps: int | None = None
    """Euler steps (default: the config's)."""
    compute_dtype: str | None = None
    """float32 or bfloat16 (default: the policy's)."""
    seed: int = 0
    """every client's noise stream starts here at its reset (a reset may name its own seed)."""
    host: str = "127.0.0.1"
    """interface to bind; anything but localhost prints a warning unless --curve-keys is given."""
    port: int = DEFAULT_PORT
    """TCP port (the release's client uses 5555)."""
    max_message_mb: float = 32.0
    """larger requests get an error reply; also the cap on a message's data once shared references are expanded."""
    codec: str = "both"
    """message formats accepted: both, pickle or msgpack (pickle is never unpickled: a bounded reader reads it)."""
    max_batch: int = 16
    """most predicts sampled in one batch (1 = sequential serving)."""
    batch_wait_ms: float = 3.0
    """how long the first predict waits for other active clients' predicts."""
    max_sessions: int = 256
    """client sessions kept; the least recently seen is dropped beyond this."""
    curve_keys: str | None = None
    """a directory from make_curve_keys: require ZeroMQ CURVE and admit only the clients whose keys are in it."""


def load_policy(args: ServeArgs):
    """-> (policy, ckpt_path): the directory it came from, or a folder-safe name for a preset."""
    from nitrogen_jax.policy import Policy

    if (args.policy is None) == (args.preset is None):
        raise ValueError("give exactly one of --policy DIR or --preset NAME")
    overrides = {"compute_dtype": args.compute_dtype} if args.compute_dtype else {}
    if args.policy is not None:
        return Policy.load(args.policy, **overrides), str(Path(args.policy).resolve())
    return Policy.init(args.preset, seed=args.seed, **overrides), f"nitrogen-jax-preset-{args.preset}"


def build_server(args: ServeArgs) -> PolicyServer:
    if args.codec not in ("both", "pickle", "msgpack"):
        raise ValueError(f"--codec must be both, pickle or msgpack, got {args.codec!r}")
    policy, source = load_policy(args)
    codecs = ("pickle", "msgpack") if args.codec == "both" else (args.codec,)
    return PolicyServer(
        policy,
        temperature=args.temperature,
        num_steps=args.steps,
        seed=args.seed,
        max_message_bytes=int(args.max_message_mb * (1 << 20)),
        codecs=codecs,
        source=source,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        max_sessions=args.max_sessions,
        curve_keys=args.curve_keys,
    )


def run(args: ServeArgs) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    t0 = time.perf_counter()
    server = build_server(args)
    endpoint = server.bind(args.host, args.port)
    print(
        f"{server.policy} from {server.source}\nwarm in {time.perf_counter() - t0:.1f} s; serving "
        f"{'/'.join(server.codecs)} on {endpoint}{' (CURVE)' if args.curve_keys else ''}, batches of up to "
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


if __name__ == "__main__":
    import tyro

    raise SystemExit(run(tyro.cli(ServeArgs)))
