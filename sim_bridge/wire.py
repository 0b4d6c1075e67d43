"""The release's wire format, read safely: pickle through a whitelist, or msgpack.

The release's client sends pickled dicts. Unpickling untrusted bytes runs whatever callable the bytes name, so
`loads_pickle` resolves pickle globals from a table of exactly what a dict of numpy arrays needs; each entry builds
an inert placeholder of ours, which is checked (plain numeric dtype, bounded shape, matching byte count) and turned
into an array after loading, so numpy never sees the message's arguments:

    numpy._core.multiarray._reconstruct / numpy.core.multiarray._reconstruct   (array pickles, protocols 2-4)
    numpy._core.numeric._frombuffer / numpy.core.numeric._frombuffer           (array pickles, protocol 5)
    numpy._core.multiarray.scalar / numpy.core.multiarray.scalar               (numpy scalars)
    numpy.dtype, numpy.ndarray (only as the array type handed to _reconstruct)
    _codecs.encode (only str -> latin-1 bytes: how protocol 2 spells bytes)

Any other global raises `WireError` before anything is called. (`numpy.core` is how numpy 1.x clients spell it.)

msgpack messages carry the same dicts; an array is a map {"nd": true, "type": dtype string, "shape": [...],
"data": bytes} (msgpack-numpy's keys). `decode` tells the formats apart by the first bytes: a pickle of protocol
2-5 starts with 0x80 and its protocol number; a msgpack request (a map of 1-15 keys) starts with 0x81-0x8f.
"""
from __future__ import annotations

import io
import math
import pickle

import msgpack
import numpy as np

PICKLE_PROTOCOL = 4  # replies: readable by any Python 3.8+ client
ALLOWED_DTYPE_KINDS = "biuf"  # bool, signed, unsigned, float
MAX_ARRAY_ELEMENTS = 1 << 28


class WireError(ValueError):
    """A message that cannot be read; the server answers it with an error reply."""


# ------------------------------------------------------------------------------------------------- pickle
# While unpickling, the whitelisted globals build inert placeholders of ours (numpy's own reconstruction
# functions, fed hostile arguments and __setstate__ tuples, are never reached); `_materialize` then validates
# each placeholder and turns it into a numpy value.
MAX_DEPTH = 32


class _ArrayType:
    """Stands for numpy.ndarray inside a pickle: accepted by `_reconstruct` only, not callable, not a type."""


_ARRAY_TYPE = _ArrayType()


class _DtypeSpec:
    """numpy.dtype(code, align, copy) + __setstate__((version, byteorder, ...)), as data."""

    def __init__(self, code, *_):
        if not isinstance(code, (str, bytes)) or len(code) > 8:
            raise WireError(f"pickle: numpy.dtype({code!r:.40}) is not a plain dtype code")
        self.code, self.byteorder = code.decode() if isinstance(code, bytes) else code, ""

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise WireError(f"pickle: dtype state {state!r:.80} is not understood")
        self.byteorder = state[1] if state[1] in "<>" else ""

    def dtype(self) -> np.dtype:
        try:
            dt = np.dtype(self.byteorder + self.code.lstrip("<>|="))
        except TypeError as e:
            raise WireError(f"pickle: dtype {self.code!r} is not a numpy dtype ({e})") from None
        return _check_dtype(dt)


class _ArraySpec:
    """An array to be: numpy's pickles call _reconstruct(ndarray, (0,), 'b') then __setstate__ with the data."""

    def __init__(self, dtype=None, shape=None, data=None, order="C"):
        self.state = (dtype, shape, data, order)

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5 or self.state[2] is not None:
            raise WireError("pickle: array state must be (version, shape, dtype, is_fortran, data), set once")
        _, shape, dtype, fortran, data = state
        self.state = (dtype, shape, data, "F" if fortran else "C")

    def array(self) -> np.ndarray:
        dtype, shape, data, order = self.state
        if not isinstance(dtype, _DtypeSpec):
            raise WireError("pickle: an array needs a numpy dtype")
        dt, shape = dtype.dtype(), _check_shape(shape)
        if not isinstance(data, (bytes, bytearray)) or order not in ("C", "F"):
            raise WireError(f"pickle: an array needs bytes of data and order C or F, got {type(data).__name__}, {order!r:.10}")
        if math.prod(shape) * dt.itemsize != len(data):
            raise WireError(f"pickle: array of shape {shape} and type {dt.str} needs {math.prod(shape) * dt.itemsize} bytes, got {len(data)}")
        return np.frombuffer(data, dt).reshape(shape, order=order).copy()


class _ScalarSpec:
    def __init__(self, dtype, data=None):
        self.dtype, self.data = dtype, data

    def value(self):
        if not isinstance(self.dtype, _DtypeSpec) or not isinstance(self.data, bytes):
            raise WireError("pickle: a numpy scalar needs a numpy dtype and bytes")
        dt = self.dtype.dtype()
        if len(self.data) != dt.itemsize:
            raise WireError(f"pickle: a numpy {dt} scalar needs {dt.itemsize} bytes, got {len(self.data)}")
        return np.frombuffer(self.data, dt)[0]


def _check_dtype(dt) -> np.dtype:
    if not isinstance(dt, np.dtype) or dt.kind not in ALLOWED_DTYPE_KINDS or dt.fields is not None:
        raise WireError(f"dtype {dt!r:.80} is not allowed (only bool, int, uint and float arrays)")
    return dt


def _check_shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > 8 or not all(type(s) is int and s >= 0 for s in shape):
        raise WireError(f"array shape {shape!r:.80} is not a tuple of at most 8 sizes")
    if math.prod(shape) > MAX_ARRAY_ELEMENTS:
        raise WireError(f"array shape {shape} has more than {MAX_ARRAY_ELEMENTS} elements")
    return shape


def _reconstruct(array_type, shape, dtype):
    if array_type is not _ARRAY_TYPE:
        raise WireError(f"pickle: _reconstruct of {type(array_type).__name__}; only numpy.ndarray is allowed")
    return _ArraySpec()


def _frombuffer(buffer, dtype, shape, order):
    return _ArraySpec(dtype, shape, bytes(buffer) if isinstance(buffer, bytearray) else buffer, order)


def _latin1(text, encoding="latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise WireError(f"pickle: _codecs.encode is allowed for str -> latin1 only, got {type(text).__name__}, {encoding!r:.20}")
    return text.encode("latin1")


_GLOBALS = {
    ("numpy", "dtype"): _DtypeSpec,
    ("numpy", "ndarray"): _ARRAY_TYPE,
    ("_codecs", "encode"): _latin1,
}
for _core in ("numpy._core", "numpy.core"):
    _GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct
    _GLOBALS[(f"{_core}.multiarray", "scalar")] = _ScalarSpec
    _GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _frombuffer


class _WhitelistUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise WireError(f"pickle: global {module}.{name} is not allowed (only dicts, lists, str, numbers and "
                            f"numpy arrays may be sent)") from None

    def persistent_load(self, pid):
        raise WireError("pickle: persistent ids are not allowed")


def _materialize(obj, depth: int = 0):
    if depth > MAX_DEPTH:
        raise WireError(f"pickle: containers nested deeper than {MAX_DEPTH}")
    if isinstance(obj, _ArraySpec):
        return obj.array()
    if isinstance(obj, _ScalarSpec):
        return obj.value()
    if isinstance(obj, (_DtypeSpec, _ArrayType)):
        raise WireError("pickle: a bare numpy dtype or type is not a value")
    if isinstance(obj, dict):
        return {_materialize(k, depth + 1): _materialize(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(_materialize(v, depth + 1) for v in obj)
    return obj


def loads_pickle(data: bytes):
    """Unpickle `data` allowing only plain containers, numbers, str/bytes and numeric numpy arrays."""
    try:
        return _materialize(_WhitelistUnpickler(io.BytesIO(data)).load())
    except WireError:
        raise
    except Exception as e:  # a malformed pickle can raise almost anything; none of it may escape as a crash
        raise WireError(f"pickle: cannot read the message ({type(e).__name__}: {e})"[:500]) from None


def dumps_pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)


# ------------------------------------------------------------------------------------------------ msgpack
def _pack_array(obj):
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype)
        return {"nd": True, "type": obj.dtype.str, "kind": "", "shape": list(obj.shape), "data": obj.tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send {type(obj).__name__} over msgpack")


def _unpack_array(obj: dict):
    if obj.get("nd", obj.get(b"nd")) is not True:
        return obj
    get = lambda k: obj.get(k, obj.get(k.encode()))
    dtype, shape, data = get("type"), get("shape"), get("data")
    try:
        dt = _check_dtype(np.dtype(dtype.decode() if isinstance(dtype, bytes) else dtype))
    except TypeError as e:
        raise WireError(f"msgpack: array type {dtype!r:.40} is not a dtype ({e})") from None
    if not isinstance(data, bytes):
        raise WireError(f"msgpack: array data must be bytes, got {type(data).__name__}")
    shape = _check_shape(tuple(shape) if isinstance(shape, list) else shape)
    if math.prod(shape) * dt.itemsize != len(data):
        raise WireError(f"msgpack: array of shape {shape} and type {dt.str} needs {math.prod(shape) * dt.itemsize} bytes, got {len(data)}")
    return np.frombuffer(data, dt).reshape(shape)


def loads_msgpack(data: bytes):
    try:
        return msgpack.unpackb(data, raw=False, object_hook=_unpack_array, strict_map_key=False)
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
