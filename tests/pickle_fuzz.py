"""Random pickle opcode streams built from the pieces an attacker has: the whitelisted globals, REDUCE / NEWOBJ /
BUILD on them, memo reuse and shared references, deep nesting, arrays with huge declared shapes or wrong byte
counts, PIL image states, truncation. Shared by the reader's tests and bench/serve_fuzz.py."""

from __future__ import annotations

import pickle
import random
import struct

import numpy as np
from PIL import Image

WHITELISTED = [
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("_codecs", "encode"),
    ("PIL.Image", "Image"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
]
FORBIDDEN = [("os", "system"), ("builtins", "eval"), ("numpy", "save"), ("PIL.Image", "open"), ("builtins", "getattr")]


def _body(obj, protocol: int = 4) -> bytes:
    """A pickle without its PROTO header and STOP: pushes one value when spliced into a stream."""
    data = pickle.dumps(obj, protocol=protocol)
    return data[2:-1]


def _str(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _global(rng: random.Random, names) -> bytes:
    module, name = rng.choice(names)
    if rng.random() < 0.5:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return _str(module) + _str(name) + b"\x93"


def _bomb(levels: int) -> list:
    a: list = []
    for _ in range(levels):
        a = [a, a]
    return a


def _nested(depth: int) -> list:
    a: list = [1]
    for _ in range(depth):
        a = [a]
    return a


def _forged_array(rng: random.Random) -> bytes:
    """numpy's array recipe with a random shape and a data length that may not match it."""
    shape = tuple(rng.choice([0, 1, 3, 7, 1 << 20, 1 << 31, 1 << 62, -1]) for _ in range(rng.randint(0, 4)))
    n = rng.choice([0, 3, 12, 21, 64])
    state = b"(" + b"K\x01" + b"(" + b"".join(_body(s, 2) for s in shape) + b"t"
    state += _global(rng, [("numpy", "dtype")]) + _str(rng.choice(["u1", "f4", "O", "V8", "<i8", "zz"]))
    state += b"\x89\x88\x87R" + b"\x89" + b"C" + bytes([n]) + bytes(n) + b"t"
    recipe = _global(rng, [("numpy._core.multiarray", "_reconstruct")]) + _global(rng, [("numpy", "ndarray")])
    return recipe + b"K\x00\x85C\x01b\x87R" + state + b"b"


def _forged_image(rng: random.Random) -> bytes:
    mode = rng.choice(["RGB", "RGBA", "L", "P", "I;16", "1", ""])
    w, h = rng.choice([1, 2, 16, 9000, 1 << 30]), rng.choice([1, 3, 16, 0])
    n = rng.choice([0, 3, 48, w * h * 3 if w * h < 4096 else 7])
    palette = rng.choice([b"N", b"C\x03abc"])
    state = b"]" + b"(" + b"}" + _str(mode) + struct.pack("<ci", b"J", w) + struct.pack("<ci", b"J", h) + b"\x86"
    state += palette * rng.randint(0, 1) + b"B" + struct.pack("<I", n) + bytes(n) + b"e"
    return _global(rng, [("PIL.Image", "Image")]) + b")\x81" + state + b"b"


def _atom(rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    if kind == 0:
        return rng.choice([b"N", b"\x88", b"\x89"])
    if kind == 1:
        return b"K" + bytes([rng.randrange(256)])
    if kind == 2:
        return b"J" + struct.pack("<i", rng.randint(-(2**31), 2**31 - 1))
    if kind == 3:
        n = rng.randint(0, 12)
        return b"\x8a" + bytes([n]) + bytes(rng.randrange(256) for _ in range(n))
    if kind == 4:
        return b"G" + struct.pack(">d", rng.uniform(-1e9, 1e9))
    if kind == 5:
        return _str(rng.choice(["type", "predict", "image", "info", "x" * rng.randint(0, 40)]))
    if kind == 6:  # declared length may disagree with the bytes that follow
        n = rng.randint(0, 16)
        declared = n if rng.random() < 0.7 else rng.choice([n + 1, 1 << 31, 1 << 20])
        return b"B" + struct.pack("<I", declared) + bytes(n)
    if kind == 7:
        return b"\x96" + struct.pack("<Q", rng.randint(0, 8)) + b"\x01" * rng.randint(0, 8)
    return b"C" + bytes([3]) + b"abc"


STRUCTURE = [
    b"(",
    b"]",
    b"}",
    b")",
    b"a",
    b"e",
    b"s",
    b"u",
    b"t",
    b"\x85",
    b"\x86",
    b"\x87",
    b"\x94",
    b"R",
    b"\x81",
    b"b",
    b"0",
    b"2",
    b"1",
    b"\x8f",
    b"P",
]


def random_message(rng: random.Random, max_pieces: int = 30) -> tuple[bytes, bool]:
    """-> (pickle bytes, whether it names any global). Most are invalid; some are valid and some are hostile."""
    pieces, uses_globals = [], False
    for _ in range(rng.randint(1, max_pieces)):
        kind = rng.randrange(14)
        if kind < 4:
            pieces.append(_atom(rng))
        elif kind < 8:
            pieces.append(rng.choice(STRUCTURE))
        elif kind == 8:  # memo reuse: GET an index that may or may not exist
            pieces.append(
                rng.choice(
                    [
                        b"h" + bytes([rng.randrange(6)]),
                        b"j" + struct.pack("<I", rng.randrange(6)),
                        b"q" + bytes([rng.randrange(6)]),
                    ]
                )
            )
        elif kind == 9:
            uses_globals = True
            g = _global(rng, WHITELISTED if rng.random() < 0.9 else FORBIDDEN)
            tail = rng.choice([b"", b"N}\x86b", b"}b", b")R", b")\x81", b"(t\x81"])  # BUILD / REDUCE / NEWOBJ on it
            pieces.append(g + tail)
        elif kind == 10:
            uses_globals = True
            pieces.append(rng.choice([_forged_array, _forged_image])(rng))
        elif kind == 11:
            uses_globals = True
            shape = tuple(rng.randint(0, 4) for _ in range(rng.randint(0, 3)))
            dtype = rng.choice([np.uint8, np.float32, ">i4", np.bool_])
            value = rng.choice(
                [
                    np.zeros(shape, dtype),
                    np.float32(rng.random()),
                    Image.new(rng.choice(["RGB", "RGBA", "L"]), (rng.randint(1, 5), rng.randint(1, 5))),
                ]
            )
            pieces.append(_body(value, rng.choice([2, 3, 4, 5])))
        elif kind == 12:
            pieces.append(_body(rng.choice([_bomb(rng.randint(1, 40)), _nested(rng.randint(1, 80))])))
        else:
            pieces.append(_body({"type": "predict", "meta": [rng.random(), "x", (1, 2)]}))
    data = bytes([0x80, rng.choice([2, 3, 4, 5])]) + b"".join(pieces) + (b"." if rng.random() < 0.9 else b"")
    if rng.random() < 0.15:
        data = data[: rng.randint(2, len(data))]
    return data, uses_globals
