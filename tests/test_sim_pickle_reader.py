"""The bounded pickle reader: what Pillow and numpy send is read; no message changes state or costs unbounded work."""

import pickle
import random
import time
import tracemalloc
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nitrogen_jax.sim_bridge import pickle_reader
from nitrogen_jax.sim_bridge.pickle_reader import Limits, WireError, read_pickle
from nitrogen_jax.sim_bridge.server import PolicyServer
from nitrogen_jax.sim_bridge.wire import loads_pickle
from tests.pickle_fuzz import _bomb, random_message
from tests.sim_support import tiny_policy

IMAGE = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
HONEST = {"type": "predict", "image": IMAGE, "scalar": np.float32(0.25), "n": np.int64(3), "meta": [1, "x", None]}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_pil_images_are_read_as_pillow_pickles_them(protocol, mode):
    image = Image.fromarray(IMAGE[:40, :60]).convert(mode)
    out = read_pickle(pickle.dumps({"type": "predict", "image": image}, protocol=protocol))["image"]
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out, np.asarray(image.convert("RGB")))


def _pillow_pickle(*state) -> bytes:
    """A pickle exactly as Pillow's Image makes one (NEWOBJ of PIL.Image.Image, then BUILD), with a chosen state."""
    image = Image.new("L", (1, 1))
    cast(Any, image).__getstate__ = lambda: list(state)  # patch this instance (mypy forbids assigning a method)
    return pickle.dumps(image)


def test_older_pillow_state_without_palette_is_read():
    """Pillow < 12 pickles [info, mode, size, data]: the same image state without the palette slot."""
    info, mode, size, _, data = Image.fromarray(IMAGE[:4, :5]).__getstate__()
    older = _pillow_pickle(info, mode, size, data)
    assert b"\x81" in older  # NEWOBJ, as Pillow's own pickles
    np.testing.assert_array_equal(read_pickle(older), IMAGE[:4, :5])


def test_image_with_wrong_byte_count_or_size_is_refused():
    cases = [
        (("RGB", (4, 4), bytes(47)), "needs 48 bytes"),
        (("RGB", (9000, 1), bytes(27000)), "within 1..8192"),
        (("CMYK", (1, 1), bytes(4)), "mode 'CMYK'"),
        (("RGB", (2, 2), "text"), "needs 12 bytes"),
    ]
    for (mode, size, data), message in cases:
        with pytest.raises(WireError, match=message.replace("(", r"\(")):
            read_pickle(_pillow_pickle({}, mode, size, None, data))


def test_build_on_a_whitelisted_global_is_refused_and_changes_nothing():
    """The issue's first message: BUILD with slot state on numpy.dtype itself; after it, scalars still read."""
    for protocol in (2, 4):
        attack = bytes([0x80, protocol]) + b"cnumpy\ndtype\n" + b"N}\x8c\x04kindK\x01s\x86b."
        with pytest.raises(WireError, match="BUILD on the global numpy.dtype"):
            read_pickle(attack)
    out = read_pickle(pickle.dumps(HONEST))
    assert out["scalar"] == np.float32(0.25) and out["n"].dtype == np.int64


def test_shared_reference_bomb_is_refused_fast():
    data = pickle.dumps(_bomb(30), protocol=4)
    assert len(data) < 260
    t0 = time.perf_counter()
    with pytest.raises(WireError, match="max_nodes"):
        read_pickle(data)
    assert time.perf_counter() - t0 < 0.5  # generous: refused after about a dozen levels, not a billion nodes
    assert read_pickle(pickle.dumps(_bomb(5))) == _bomb(5)  # small sharing is fine: 63 nodes


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        ([[[[[[1]]]]]], Limits(max_depth=4)),
        (list(range(50)), Limits(max_nodes=20)),
        ([b"x" * 100] * 3, Limits(max_bytes=250)),
        (np.zeros(100, np.uint8), Limits(max_array_elements=50)),
        (list(range(30)), Limits(max_opcodes=25)),
    ],
)
def test_each_limit_is_named_in_the_error(message, limit):
    name = next(
        f
        for f in ("max_depth", "max_nodes", "max_bytes", "max_array_elements", "max_opcodes")
        if getattr(limit, f) != getattr(Limits(), f)
    )
    with pytest.raises(WireError, match=name):
        read_pickle(pickle.dumps(message), limit)
    read_pickle(pickle.dumps(message))  # within the default limits


def test_cycles_and_late_changes_are_refused():
    a: list = []
    a.append(a)
    with pytest.raises(WireError, match="itself|shared"):
        read_pickle(pickle.dumps(a))
    # a list shared twice, then appended to: its expanded cost would change behind its parents' backs
    late = b"\x80\x04]\x94]h\x00ah\x00K\x01a."
    with pytest.raises(WireError, match="already shared"):
        read_pickle(late)
    with pytest.raises(WireError, match="opcode POP"):
        read_pickle(b"\x80\x04K\x010N.")


def _module_state():
    return {k: v for k, v in vars(pickle_reader).items() if not k.startswith("__")}, dict(pickle_reader._GLOBALS)


@settings(
    max_examples=3000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.randoms(use_true_random=False))
def test_fuzz_reader_answers_every_stream_and_agrees_with_pickle(rng):
    data, uses_globals = random_message(rng)
    before = _module_state()
    t0 = time.perf_counter()
    try:
        value = read_pickle(data)
    except WireError:
        value = WireError
    # a bound to catch runaway work (the 100 ms per message figure is measured in bench/serve_fuzz.py)
    assert time.perf_counter() - t0 < 1.0
    assert _module_state() == before
    if value is not WireError and not uses_globals:  # plain values: exactly what pickle itself reads
        assert pickle.loads(data) == value


def test_fuzz_through_the_server_keeps_memory_flat_and_answers_honestly_afterwards():
    srv = PolicyServer(tiny_policy(), seed=5, max_batch=1, max_message_bytes=1 << 20)
    honest = pickle.dumps({"type": "predict", "image": IMAGE})
    srv.handle(pickle.dumps({"type": "reset"}))
    first = loads_pickle(srv.handle(honest))
    rng = random.Random(11)
    for _ in range(200):  # warm every code path before measuring
        srv.handle(random_message(rng)[0])
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    worst = 0.0
    for _ in range(1000):
        message = random_message(rng)[0]
        t0 = time.perf_counter()
        reply = loads_pickle(srv.handle(message))
        worst = max(worst, time.perf_counter() - t0)
        assert reply["status"] in ("ok", "error")
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert grown < 256 << 10, f"server memory grew by {grown} bytes over 1000 hostile messages"
    assert worst < 1.0
    srv.handle(pickle.dumps({"type": "reset"}))
    again = loads_pickle(srv.handle(honest))
    for key in ("j_left", "j_right", "buttons"):
        np.testing.assert_array_equal(first["pred"][key], again["pred"][key])
