"""Many games at once: per-client sessions, one batch for requests that arrive together, CURVE keys, the bind
warning and the `serve` command's options."""

import pickle
import threading

import jax
import numpy as np
import pytest

from nitrogen_jax.commands import PolicySource
from nitrogen_jax.sim_bridge.batch_sampler import BatchSampler, batch_buckets
from nitrogen_jax.sim_bridge.cli import ServeArgs
from nitrogen_jax.sim_bridge.client import PolicyClient
from nitrogen_jax.sim_bridge.curve_keys import make_curve_keys
from nitrogen_jax.sim_bridge.server import PolicyServer
from nitrogen_jax.sim_bridge.wire import loads_pickle
from tests.sim_support import tiny_policy

FRAMES = np.random.default_rng(3).integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
STICK_ATOL = 1e-5  # a batch of 4 rounds its matmuls differently from a batch of 1 (measured: < 1e-6)


def _solo(seed: int, frames: list[np.ndarray]) -> list[dict]:
    """What a client alone gets: its seed's stream, one frame per request, batches of one."""
    sampler, key, out = BatchSampler(tiny_policy(), max_batch=1), jax.random.key(seed), []
    for frame in frames:
        (pred,), (key,) = sampler.sample(frame[None], [key])
        out.append(pred)
    return out


def _assert_same(pred: dict, expected: dict) -> None:
    np.testing.assert_array_equal(pred["buttons"], expected["buttons"])
    for key in ("j_left", "j_right"):
        np.testing.assert_allclose(pred[key], expected[key], atol=STICK_ATOL)


@pytest.fixture(scope="module")
def batch_server():
    return PolicyServer(tiny_policy(), seed=0, max_batch=4, warm_every_batch_size=False)


def test_requests_that_arrive_together_are_one_batch_with_solo_results(batch_server):
    srv = batch_server
    clients = [f"game-{i}".encode() for i in range(4)]
    for i, c in enumerate(clients):
        srv.handle(pickle.dumps({"type": "reset", "seed": 10 + i}), c)
    batches = srv.batches
    together = [
        loads_pickle(r)
        for r in srv.handle_many(
            [(c, pickle.dumps({"type": "predict", "image": FRAMES[i]})) for i, c in enumerate(clients)]
        )
    ]
    assert srv.batches == batches + 1
    for i, reply in enumerate(together):
        _assert_same(reply["pred"], _solo(10 + i, [FRAMES[i]])[0])
    # the sessions are independent: game-0 resets and predicts again; game-1's stream is where it was
    srv.handle(pickle.dumps({"type": "reset", "seed": 10}), clients[0])
    mixed = srv.handle_many(
        [
            (clients[0], pickle.dumps({"type": "predict", "image": FRAMES[0]})),
            (clients[1], pickle.dumps({"type": "predict", "image": FRAMES[2]})),
        ]
    )
    _assert_same(loads_pickle(mixed[0])["pred"], _solo(10, [FRAMES[0]])[0])
    _assert_same(loads_pickle(mixed[1])["pred"], _solo(11, [FRAMES[1], FRAMES[2]])[1])


def test_a_clients_later_request_in_the_same_batch_sees_its_earlier_one(batch_server):
    srv, c = batch_server, b"dealer-like"
    replies = srv.handle_many(
        [
            (c, pickle.dumps({"type": "reset", "seed": 4})),
            (c, pickle.dumps({"type": "predict", "image": FRAMES[0]})),
            (c, pickle.dumps({"type": "predict", "image": FRAMES[1]})),
            (c, pickle.dumps({"type": "bogus"})),
        ]
    )
    solo = _solo(4, [FRAMES[0], FRAMES[1]])
    _assert_same(loads_pickle(replies[1])["pred"], solo[0])
    _assert_same(loads_pickle(replies[2])["pred"], solo[1])
    assert loads_pickle(replies[3])["status"] == "error"


def test_concurrent_clients_over_a_socket_are_batched_and_get_their_own_streams():
    srv = PolicyServer(tiny_policy(), seed=0, max_batch=4, batch_wait_ms=50, warm_every_batch_size=False)
    endpoint = srv.bind("127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(target=srv.serve, args=(stop,), daemon=True)
    thread.start()
    results: dict[int, list] = {}

    def game(i: int) -> None:
        with PolicyClient(endpoint, "pickle" if i % 2 else "msgpack") as client:
            client.reset(seed=20 + i)
            results[i] = [client.predict(FRAMES[(i + k) % 4]) for k in range(3)]

    try:
        players = [threading.Thread(target=game, args=(i,)) for i in range(4)]
        for p in players:
            p.start()
        for p in players:
            p.join(120)
    finally:
        stop.set()
        thread.join(10)
        srv.close()
    assert sorted(results) == [0, 1, 2, 3] and len(srv.sessions) == 4
    predicts = 4 * 3
    assert srv.batches < predicts, f"{srv.batches} batches for {predicts} predicts: nothing was batched"
    for i, preds in results.items():
        for pred, expected in zip(preds, _solo(20 + i, [FRAMES[(i + k) % 4] for k in range(3)]), strict=True):
            _assert_same(pred, expected)


def test_sessions_beyond_the_limit_drop_the_least_recently_seen():
    srv = PolicyServer(tiny_policy(), max_batch=1, max_sessions=2)
    for c in (b"a", b"b", b"c"):
        srv.handle(pickle.dumps({"type": "info"}), c)
    assert list(srv.sessions) == [b"b", b"c"] and srv.evicted == 1
    assert batch_buckets(16) == (1, 2, 4, 8, 16) and batch_buckets(6) == (1, 2, 4, 6)


def test_curve_keys_admit_only_clients_holding_an_authorised_key(tmp_path):
    keys = make_curve_keys(tmp_path / "keys", clients=("laptop",))
    strangers = make_curve_keys(tmp_path / "other", clients=("stranger",))
    srv = PolicyServer(tiny_policy(), max_batch=1, codecs=("msgpack",), curve_keys=tmp_path / "keys")
    endpoint = srv.bind("127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(target=srv.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        with PolicyClient(endpoint, "msgpack", timeout_s=20, curve=keys["laptop"]) as client:
            assert client.info()["codecs"] == ["msgpack"]
            assert client.predict(FRAMES[0])["buttons"].shape == (18, 21)
        for curve in (None, strangers["stranger"]):  # no key at all, or a key the server never authorised
            with PolicyClient(endpoint, "msgpack", timeout_s=1.0, curve=curve) as client, pytest.raises(TimeoutError):
                client.info()
    finally:
        stop.set()
        thread.join(10)
        srv.close()
    assert srv.requests == 2  # the refused clients' messages never reached the server


def test_binding_beyond_localhost_warns_that_pickle_is_unauthenticated(capsys, tmp_path):
    srv = PolicyServer(tiny_policy(), max_batch=1)
    srv.bind("127.0.0.1", 0)
    srv.close()
    assert "WARNING" not in capsys.readouterr().err
    srv.bind("0.0.0.0", 0)
    srv.close()
    assert "unauthenticated" in capsys.readouterr().err


def test_serve_args_build_a_server_whose_info_names_the_policy_directory(tmp_path):
    tiny_policy().save(tmp_path / "my-run")
    srv = ServeArgs(source=PolicySource(policy=tmp_path / "my-run"), max_batch=2, port=0).build_server()
    info = srv.info()
    assert info["ckpt_path"] == str((tmp_path / "my-run").resolve()) and info["max_batch"] == 2
    assert info["action_downsample_ratio"] == 1 and info["context_length"] == 1
    assert (
        ServeArgs(source=PolicySource(preset="tiny")).build_server().info()["ckpt_path"] == "nitrogen-jax-preset-tiny"
    )
