"""The release's wire format, read safely: pickle through our own bounded reader, or msgpack.

The release's client sends pickled dicts whose "image" is a PIL image (our clients send numpy arrays). Pickles are
never given to `pickle`: `pickle_reader.read_pickle` walks the opcodes itself, knows only plain values, numeric
numpy arrays and RGB/RGBA/L PIL images (which arrive as uint8 (H, W, 3) arrays), and bounds every message's nodes,
depth, bytes and array elements before spending them (see that module).

msgpack messages carry the same dicts; an array is a map {"nd": true, "type": dtype string, "shape": [...],
"data": bytes} (msgpack-numpy's keys). `detect` tells the formats apart by the first bytes: a pickle of protocol
2-5 starts with 0x80 and its protocol number; a msgpack request (a map of 1-15 keys) starts with 0x81-0x8f.
"""

from __future__ import annotations

import math
import pickle

import msgpack
import numpy as np

from nitrogen_jax.sim_bridge.pickle_reader import Limits, WireError, check_dtype, check_shape, read_pickle

PICKLE_PROTOCOL = 4  # replies: readable by any Python 3.8+ client
DEFAULT_LIMITS = Limits()

__all__ = [
    "CODECS",
    "DEFAULT_LIMITS",
    "Limits",
    "WireError",
    "detect",
    "dumps_msgpack",
    "dumps_pickle",
    "loads_msgpack",
    "loads_pickle",
]


def loads_pickle(data: bytes, limits: Limits = DEFAULT_LIMITS):
    """Decode a pickled message: plain values, numeric numpy arrays, PIL images; nothing is executed."""
    try:
        return read_pickle(data, limits)
    except WireError:
        raise
    except Exception as e:  # a reader bug must cost one message, never the server
        raise WireError(f"pickle: cannot read the message ({type(e).__name__}: {e})"[:500]) from None


def dumps_pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)


# ------------------------------------------------------------------------------------------------ msgpack
def _pack_array(obj):
    if isinstance(obj, np.ndarray):
        check_dtype(obj.dtype)
        return {"nd": True, "type": obj.dtype.str, "kind": "", "shape": list(obj.shape), "data": obj.tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send {type(obj).__name__} over msgpack")


def _unpack_array(obj: dict, limits: Limits = DEFAULT_LIMITS):
    if obj.get("nd", obj.get(b"nd")) is not True:
        return obj
    dtype, shape, data = (obj.get(k, obj.get(k.encode())) for k in ("type", "shape", "data"))
    try:
        dt = check_dtype(np.dtype(dtype.decode() if isinstance(dtype, bytes) else dtype))
    except TypeError as e:
        raise WireError(f"msgpack: array type {dtype!r:.40} is not a dtype ({e})") from None
    if not isinstance(data, bytes):
        raise WireError(f"msgpack: array data must be bytes, got {type(data).__name__}")
    shape = check_shape(tuple(shape) if isinstance(shape, list) else shape, limits)
    if math.prod(shape) * dt.itemsize != len(data):
        raise WireError(
            f"msgpack: array of shape {shape} and type {dt.str} needs {math.prod(shape) * dt.itemsize} bytes, "
            f"got {len(data)}"
        )
    return np.frombuffer(data, dt).reshape(shape)


def loads_msgpack(data: bytes, limits: Limits = DEFAULT_LIMITS):
    """msgpack has no shared references: its expanded size is its size; lengths are still capped by `limits`."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            object_hook=lambda o: _unpack_array(o, limits),
            strict_map_key=False,
            max_bin_len=limits.max_bytes,
            max_str_len=limits.max_bytes,
            max_array_len=limits.max_nodes,
            max_map_len=limits.max_nodes,
        )
    except WireError:
        raise
    except Exception as e:
        raise WireError(f"msgpack: cannot read the message ({type(e).__name__}: {e})"[:500]) from None


def dumps_msgpack(obj) -> bytes:
    return msgpack.packb(obj, default=_pack_array, use_bin_type=True)


# ------------------------------------------------------------------------------------------------- either
CODECS = {"pickle": (loads_pickle, dumps_pickle), "msgpack": (loads_msgpack, dumps_msgpack)}


def detect(data: bytes) -> str:
    """'pickle' for a protocol 2-5 pickle, else 'msgpack'."""
    return "pickle" if len(data) > 1 and data[0] == 0x80 and 2 <= data[1] <= 5 else "msgpack"
