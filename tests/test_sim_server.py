"""The release's wire protocol over a real ZeroMQ socket: the release's game client step by step, our pickle and
msgpack clients, hostile payloads, fuzz."""

import os
import pickle
import socket
import threading
from pathlib import Path

import cv2
import jax
import msgpack
import numpy as np
import pytest
import zmq
from PIL import Image

from nitrogen_jax.actions import RELEASE_LAYOUT, STANDARD_BUTTONS
from nitrogen_jax.sim_bridge.client import PolicyClient, ServerError
from nitrogen_jax.sim_bridge.server import PolicyServer
from nitrogen_jax.sim_bridge.wire import WireError, dumps_msgpack, loads_pickle
from tests.sim_support import tiny_policy

IMAGE = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def server():
    srv = PolicyServer(
        tiny_policy(),
        seed=7,
        max_message_bytes=1 << 20,
        max_batch=4,
        warm_every_batch_size=False,
        source="/runs/nitrogen-tiny",
    )
    endpoint = srv.bind("127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(target=srv.serve, args=(stop,), daemon=True)
    thread.start()
    yield srv, endpoint
    stop.set()
    thread.join(5)
    srv.close()


def _release_client(endpoint):
    """What the release's client does: a REQ socket and pickle.dumps / pickle.loads of plain dicts."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.RCVTIMEO, 30_000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _expected_pred(seed: int, image: np.ndarray):
    """The first prediction after a reset, computed in-process: the server must return exactly this."""
    policy = tiny_policy()
    _, rng = jax.random.split(jax.random.key(seed))
    pad = policy.config.layout.decode(np.asarray(policy.sample(image[None], rng=rng))[0])
    return pad, RELEASE_LAYOUT.encode(pad)[:, :21]


RELEASE_INFO_KEYS = {
    "ckpt_path",
    "selected_game",
    "old_layout",
    "cfg_scale",
    "context_length",
    "action_interleaving",
    "is_flowmatching",
    "action_downsample_ratio",
}


def _screen_capture(step: int) -> np.ndarray:
    """A 1280x720 'screen': smooth gradients (as a game frame has) plus a moving sprite and some noise."""
    y, x = np.mgrid[0:720, 0:1280]
    screen = np.stack([x * 255 // 1279, y * 255 // 719, (x + y + 40 * step) % 256], -1).astype(np.uint8)
    screen[300:420, 200 + 50 * step : 360 + 50 * step] = (250, 40, 40)
    noise = np.random.default_rng(step).integers(0, 8, screen.shape, dtype=np.uint8)
    return screen + noise


def test_release_game_client_steps_literally(server):
    """The release's game client, step by step as the reference lists them, against the server."""
    srv, endpoint = server
    sock = _release_client(endpoint)
    sock.send(pickle.dumps({"type": "reset"}))
    assert pickle.loads(sock.recv())["status"] == "ok"
    sock.send(pickle.dumps({"type": "info"}))
    info = pickle.loads(sock.recv())["info"]
    assert set(info) >= RELEASE_INFO_KEYS
    action_downsample_ratio = info["action_downsample_ratio"]
    run_name = Path(info["ckpt_path"]).stem
    assert action_downsample_ratio == 1 and run_name == "nitrogen-tiny" and info["context_length"] == 1
    assert info["is_flowmatching"] is True and info["cfg_scale"] == 1.0 and info["selected_game"] is None
    lt, rt = RELEASE_LAYOUT.button_names.index("left_trigger"), RELEASE_LAYOUT.button_names.index("right_trigger")
    steps = 0
    for capture in range(2):
        frame = cv2.resize(_screen_capture(capture), (256, 256), interpolation=cv2.INTER_AREA)
        image = Image.fromarray(frame).convert("RGB")
        assert isinstance(image, Image.Image)
        sock.send(pickle.dumps({"type": "predict", "image": image}))
        reply = pickle.loads(sock.recv())
        assert reply["status"] == "ok", reply
        pred = reply["pred"]
        if capture == 0:  # the first prediction after the reset: exactly the in-process one for this frame
            pad, buttons = _expected_pred(7, np.asarray(image))
            np.testing.assert_array_equal(pred["buttons"], buttons)
            np.testing.assert_array_equal(pred["j_left"], pad.j_left)
        for i in range(len(pred["buttons"])):
            xl, yl = pred["j_left"][i]
            xr, yr = pred["j_right"][i]
            buttons = pred["buttons"][i]
            assert len(buttons) == 21
            sticks = [int(v * 32767) for v in (xl, -yl, xr, -yr)]
            assert all(-32767 <= v <= 32767 for v in sticks)
            triggers = [buttons[lt] * 255, buttons[rt] * 255]
            assert all(0 <= t <= 255 for t in triggers)
            pressed = [bool(v > 0.5) for j, v in enumerate(buttons) if j not in (lt, rt)]
            assert len(pressed) == 19
            steps += action_downsample_ratio
    assert steps == 2 * 18
    sock.close()


@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_pil_images_of_other_modes_are_read_as_rgb(server, mode):
    _, endpoint = server
    sock = _release_client(endpoint)
    image = Image.fromarray(IMAGE).convert(mode)
    sock.send(pickle.dumps({"type": "reset"}))
    sock.recv()
    sock.send(pickle.dumps({"type": "predict", "image": image}))
    pred = pickle.loads(sock.recv())["pred"]
    sock.close()
    pad, buttons = _expected_pred(7, np.asarray(image.convert("RGB")))
    np.testing.assert_array_equal(pred["buttons"], buttons)
    np.testing.assert_array_equal(pred["j_right"], pad.j_right)


def test_release_protocol_round_trip(server):
    srv, endpoint = server
    sock = _release_client(endpoint)
    sock.send(pickle.dumps({"type": "reset"}))
    assert pickle.loads(sock.recv()) == {"status": "ok"}
    sock.send(pickle.dumps({"type": "info"}))
    info = pickle.loads(sock.recv())
    assert info["status"] == "ok" and info["info"]["action_horizon"] == 18 and len(info["info"]["buttons"]) == 21
    sock.send(pickle.dumps({"type": "predict", "image": IMAGE}))
    reply = pickle.loads(sock.recv())
    assert reply["status"] == "ok" and set(reply["pred"]) == {"j_left", "j_right", "buttons"}
    pred = reply["pred"]
    assert pred["j_left"].shape == (18, 2) and pred["j_right"].shape == (18, 2) and pred["buttons"].shape == (18, 21)
    pad, buttons = _expected_pred(7, IMAGE)
    np.testing.assert_array_equal(pred["j_left"], pad.j_left)
    np.testing.assert_array_equal(pred["j_right"], pad.j_right)
    np.testing.assert_array_equal(pred["buttons"], buttons)
    assert set(np.unique(pred["buttons"])) <= {0.0, 1.0} and np.abs(pred["j_left"]).max() <= 1.0
    sock.close()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_is_read(protocol):
    msg = {
        "type": "predict",
        "image": IMAGE,
        "meta": [1, 2.5, "x", None, True, b"raw", (3, 4)],
        "scalar": np.float32(0.5),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "be": np.arange(3, dtype=">i4"),
    }
    out = loads_pickle(pickle.dumps(msg, protocol=protocol))
    np.testing.assert_array_equal(out["image"], IMAGE)
    assert out["meta"] == msg["meta"] and out["scalar"] == np.float32(0.5) and out["scalar"].dtype == np.float32
    np.testing.assert_array_equal(out["fortran"], msg["fortran"])
    assert out["be"].dtype.str == ">i4" and out["be"].tolist() == [0, 1, 2]


def test_msgpack_client_matches_pickle_client(server):
    _, endpoint = server
    preds = {}
    for codec in ("pickle", "msgpack"):
        with PolicyClient(endpoint, codec) as client:
            client.reset()
            assert client.info()["codecs"] == ["pickle", "msgpack"]
            preds[codec] = client.predict(IMAGE)
            with pytest.raises(ServerError, match="unknown request type"):
                client.request({"type": "fly"})
    for key in ("j_left", "j_right", "buttons"):
        np.testing.assert_array_equal(preds["pickle"][key], preds["msgpack"][key])
    # a non-Python client: plain msgpack maps with msgpack-numpy array keys
    sock = _release_client(endpoint)
    image = {"nd": True, "type": "|u1", "kind": "", "shape": [120, 160, 3], "data": IMAGE[:120, :160].tobytes()}
    sock.send(msgpack.packb({"type": "predict", "image": image}))
    reply = msgpack.unpackb(sock.recv())
    assert reply["status"] == "ok" and reply["pred"]["buttons"]["shape"] == [18, 21]
    sock.close()


class _Payload:
    """Unpickling this would create a file (the classic pickle exploit), through different globals."""

    def __init__(self, how, path):
        self.how, self.path = how, path

    def __reduce__(self):
        if self.how == "open":
            return open, (self.path, "w")
        if self.how == "system":
            return os.system, (f"touch {self.path}",)
        if self.how == "eval":
            return eval, (f"open({self.path!r}, 'w')",)
        if self.how == "numpy_save":  # a numpy function that writes files: numpy is not whitelisted wholesale
            return np.save, (self.path, np.zeros(1))
        raise AssertionError(self.how)


@pytest.mark.parametrize("how", ["open", "system", "eval", "numpy_save"])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_code_running_payloads_get_an_error_and_run_nothing(server, tmp_path, how, protocol):
    _, endpoint = server
    target = tmp_path / f"pwned_{how}_{protocol}"
    payload = pickle.dumps({"type": "predict", "image": _Payload(how, str(target))}, protocol=protocol)
    sock = _release_client(endpoint)
    sock.send(payload)
    reply = pickle.loads(sock.recv()) if protocol >= 2 else msgpack.unpackb(sock.recv())
    sock.close()
    assert reply["status"] == "error", reply
    assert "not allowed" in reply["message"] or protocol < 2
    assert not target.exists() and not (tmp_path / f"pwned_{how}_{protocol}.npy").exists()
    with pytest.raises(WireError, match="not allowed"):
        loads_pickle(payload)


def test_allowed_globals_cannot_be_abused():
    """The whitelisted names build checked placeholders: no object dtype, no foreign array types, no huge shapes."""
    from numpy._core.multiarray import _reconstruct

    obj_array = pickle.dumps(np.array([1, "a"], dtype=object))
    structured = pickle.dumps(np.zeros(2, dtype=[("a", "u1")]))

    class ForgedArray:  # numpy's own pickle recipe with a forged state
        def __init__(self, shape, data):
            self.shape, self.data = shape, data

        def __reduce__(self):
            return (
                _reconstruct,
                (np.ndarray, (0,), b"b"),
                (1, self.shape, np.dtype("u1"), False, self.data),
            )

    huge = pickle.dumps(ForgedArray((1 << 20, 1 << 20), b"\x00" * 4))
    short = pickle.dumps(ForgedArray((8,), b"\x00" * 4))
    assert loads_pickle(pickle.dumps(ForgedArray((2, 2), b"\x01" * 4))).tolist() == [[1, 1], [1, 1]]
    for payload in (obj_array, structured, huge, short):
        with pytest.raises(WireError):
            loads_pickle(payload)
    for subclass_array in (np.ma.masked_array([1, 2], mask=[False, True]), np.rec.fromrecords([(1, 2)])):
        with pytest.raises(WireError, match="not allowed"):
            loads_pickle(pickle.dumps(subclass_array))


def test_size_limit_and_bad_requests_get_error_replies(server):
    _, endpoint = server
    with PolicyClient(endpoint, "pickle") as client:
        cases = [
            ({"type": "predict", "image": np.zeros((768, 768, 3), np.uint8)}, "exceeds the limit of 1048576"),
            ({"type": "predict"}, "no 'image'"),
            ({"type": "predict", "image": np.zeros((64, 64, 3), np.float32)}, "uint8"),
            ({"type": "predict", "image": np.zeros((64, 64), np.uint8)}, "(H, W, 3)"),
            ({"type": "predict", "image": [[1, 2, 3]]}, "uint8 numpy array"),
            ({"type": "predict", "image": Image.new("P", (8, 8))}, "palette"),
            ({"type": "predict", "image": Image.new("I;16", (8, 8))}, "mode 'I;16'"),
            ({"kind": "predict"}, "'type'"),
        ]
        for message, expected in cases:
            with pytest.raises(ServerError, match=expected.replace("(", r"\(").replace(")", r"\)")):
                client.request(message)
        assert client.predict(IMAGE)["buttons"].shape == (18, 21)
    # beyond twice the limit the transport drops the connection unread; the server goes on serving others
    with PolicyClient(endpoint, "pickle", timeout_s=1.0) as client, pytest.raises(TimeoutError):
        client.predict(np.zeros((1024, 1024, 3), np.uint8))
    with PolicyClient(endpoint, "msgpack") as client:
        assert client.predict(IMAGE)["buttons"].shape == (18, 21)


def test_fuzz_malformed_messages_leave_the_server_serving(server):
    srv, endpoint = server
    rng = np.random.default_rng(1)
    valid = [pickle.dumps({"type": "predict", "image": IMAGE[:32, :32]}, protocol=p) for p in (2, 4, 5)]
    valid.append(dumps_msgpack({"type": "predict", "image": IMAGE[:32, :32]}))
    junk_values = [
        None,
        1,
        -1.5,
        "predict",
        b"\x00",
        [],
        {},
        [1, 2],
        {"type": 3},
        {"type": None},
        {"type": "predict", "image": "x"},
        {"type": "predict", "image": np.zeros((0, 0, 3), np.uint8)},
        {"type": "predict", "image": np.zeros((5, 5, 4), np.uint8)},
        {"type": "info", "x": [[]] * 50},
        {"type": "predict", "image": np.zeros((9000, 1, 3), np.uint8)},
    ]
    sock = _release_client(endpoint)
    errors_before, n = srv.errors, 3000
    statuses = {"ok": 0, "error": 0}
    for i in range(n):
        kind = i % 6
        if kind == 0:
            msg = rng.bytes(int(rng.integers(0, 200)))
        elif kind == 1:  # truncated valid messages
            v = valid[i % len(valid)]
            msg = v[: int(rng.integers(0, len(v)))]
        elif kind == 2:  # bit flips in valid messages
            flipped = bytearray(valid[i % len(valid)])
            for j in rng.integers(0, len(flipped), int(rng.integers(1, 6))):
                flipped[j] ^= 1 << int(rng.integers(0, 8))
            msg = bytes(flipped)
        elif kind == 3:
            value = junk_values[i % len(junk_values)]
            msg = pickle.dumps(value) if i % 2 else dumps_msgpack(value)
        elif kind == 4:  # random msgpack structures
            msg = msgpack.packb(
                {
                    "type": "predict",
                    "image": {
                        "nd": True,
                        "type": str(rng.choice(["|u1", "<f4", "|O", "x"])),
                        "shape": [int(s) for s in rng.integers(-2, 40, int(rng.integers(0, 4)))],
                        "data": rng.bytes(30),
                    },
                }
            )
        else:  # pickle opcodes at random after a protocol header
            msg = b"\x80\x04" + rng.bytes(int(rng.integers(1, 60)))
        if i % 500 == 250:
            sock.send_multipart([msg, b"second part"])
        else:
            sock.send(msg)
        raw = sock.recv()
        reply = loads_pickle(raw) if raw[:1] == b"\x80" else msgpack.unpackb(raw)
        statuses[reply["status"]] += 1
    sock.close()
    assert statuses["error"] > 0.9 * n and srv.errors - errors_before == statuses["error"]
    # peers that do not speak ZMTP at all (random bytes parse as legacy ZMTP/1.0 frames: broken envelopes)
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", int(endpoint.rsplit(":", 1)[1]))) as raw_tcp:
            raw_tcp.sendall(rng.bytes(4096))
    with PolicyClient(endpoint, "pickle") as client:
        client.reset()
        pad, buttons = _expected_pred(7, IMAGE)
        np.testing.assert_array_equal(client.predict(IMAGE)["buttons"], buttons)


def test_server_binds_localhost_by_default():
    srv = PolicyServer(tiny_policy(), max_batch=1)
    endpoint = srv.bind(port=0)
    srv.close()
    assert endpoint.startswith("tcp://127.0.0.1:")
    with pytest.raises(ValueError, match="temperature"):
        PolicyServer(tiny_policy(), temperature=3.0)


def test_seed_layout_policy_answers_in_the_release_shape():
    """A 20-dim seed-layout policy still answers with the release's 21 button slots and decoded sticks."""
    from nitrogen_jax import Policy

    policy = Policy.init("tiny", action_layout="seed", action_fps=30.0)
    srv = PolicyServer(policy, seed=3, max_batch=1)
    assert srv.info()["action_downsample_ratio"] == 2  # a 30 Hz policy: each action held for two 60 Hz steps
    reply = loads_pickle(srv.handle(pickle.dumps({"type": "predict", "image": IMAGE})))
    pred = reply["pred"]
    assert pred["buttons"].shape == (18, 21) and pred["j_left"].shape == (18, 2)
    _, rng = jax.random.split(jax.random.key(3))
    pad = policy.config.layout.decode(np.asarray(policy.sample(IMAGE[None], rng=rng))[0])
    for i, name in enumerate(RELEASE_LAYOUT.button_names):
        expected = pad.button(name) if name in STANDARD_BUTTONS else np.zeros(18, bool)
        np.testing.assert_array_equal(pred["buttons"][:, i], expected, err_msg=name)
    np.testing.assert_array_equal(pred["j_right"], pad.j_right)
