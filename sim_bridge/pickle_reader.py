"""Reads the pickles the release's game client sends, without running them and with every cost bounded up front.

`pickle.Unpickler` executes a message: it calls the globals it names and applies BUILD states to whatever object is
on its stack, so even a whitelist of harmless-looking globals lets a message set attributes on server objects, and
memo references (`a = []; [a, a]` thirty levels deep, ~200 bytes) expand into trees of a billion nodes when the
result is walked. This reader never calls `pickle` at all: it walks the opcode stream with `pickletools`' opcode
table and argument readers and builds values on its own small stack machine, which knows exactly the opcodes that
protocols 2-5 use for dicts, lists, tuples, str, bytes, numbers, numeric numpy arrays and scalars, and PIL images:

    globals   numpy.dtype, numpy.ndarray, numpy{._core,.core}.multiarray._reconstruct / .scalar,
              numpy{._core,.core}.numeric._frombuffer, _codecs.encode (protocol 2's bytes), PIL.Image.Image
    REDUCE / NEWOBJ / BUILD   only in the shapes numpy and Pillow emit, on objects of ours that record the
              arguments as data; BUILD on a global (or twice on one object) is refused

Every value carries its cost *as if expanded* (nodes, depth, bytes): a memo reference costs what it points to
again, so a shared-reference bomb is refused at the level where it crosses `Limits.max_nodes`, before anything
is built. Containers cannot be changed once shared or placed in another (no cycles, no cost changing behind a
parent's back). Any other opcode or global gets a `WireError` naming it; a limit hit names the limit.

A PIL image (mode RGB, RGBA or L; Pillow sends [info, mode, (w, h), palette, raw bytes], Pillow < 12 without the
palette) becomes a uint8 (H, W, 3) RGB numpy array: alpha is dropped, grey is repeated, as Image.convert("RGB").
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickletools

import numpy as np


class WireError(ValueError):
    """A message that cannot be read; the server answers it with an error reply."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one message may cost once expanded; checked as each value is built, before the cost is paid."""

    max_bytes: int = 32 << 20
    """str, bytes and array data, summed over every reference."""
    max_nodes: int = 20_000
    """values (containers, atoms, arrays), summed over every reference."""
    max_depth: int = 32
    """container nesting."""
    max_opcodes: int = 20_000
    """opcodes read: bounds the work on messages whose values are never combined."""
    max_array_elements: int = 1 << 26
    """elements in one array (a 4K RGB frame has 25M)."""
    max_image_side: int = 8192
    """pixels a side of a PIL image."""


ALLOWED_DTYPE_KINDS = "biuf"  # bool, signed, unsigned, float: no objects, no structured records
IMAGE_CHANNELS = {"RGB": 3, "RGBA": 4, "L": 1}

_OPCODES = {op.code.encode("latin1"): op for op in pickletools.opcodes}
_GLOBALS = {
    ("numpy", "dtype"): "dtype",
    ("numpy", "ndarray"): "ndarray",
    ("_codecs", "encode"): "encode",
    ("PIL.Image", "Image"): "image",
}
for _core in ("numpy._core", "numpy.core"):  # numpy 2 spells it _core, numpy 1 core
    _GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = "reconstruct"
    _GLOBALS[(f"{_core}.multiarray", "scalar")] = "scalar"
    _GLOBALS[(f"{_core}.numeric", "_frombuffer")] = "frombuffer"


class _Value:
    """One value on the machine's stack: its kind, its payload, and its cost as if every reference were expanded."""

    __slots__ = ("kind", "payload", "nodes", "depth", "nbytes", "shared", "built")

    def __init__(self, kind: str, payload, nodes: int = 1, depth: int = 0, nbytes: int = 0):
        self.kind, self.payload = kind, payload
        self.nodes, self.depth, self.nbytes = nodes, depth, nbytes
        self.shared = False  # fetched from the memo or placed in a container: frozen from then on
        self.built = False  # BUILD applied (our pending numpy / PIL objects)


class _Machine:
    def __init__(self, data: bytes, limits: Limits):
        self.stream = io.BytesIO(data)
        self.size = len(data)
        self.limits = limits
        self.stack: list[_Value] = []
        self.marks: list[int] = []
        self.memo: dict[int, _Value] = {}

    # ------------------------------------------------------------------------------------------- costs
    def _new(self, kind: str, payload, children=(), nbytes: int = 0) -> _Value:
        nodes = 1 + sum(c.nodes for c in children)
        depth = 1 + max(c.depth for c in children) if children else 0
        nbytes += sum(c.nbytes for c in children)
        self._check(nodes, depth, nbytes)
        for c in children:
            c.shared = True
        return _Value(kind, payload, nodes, depth, nbytes)

    def _check(self, nodes: int, depth: int, nbytes: int) -> None:
        lim = self.limits
        if nodes > lim.max_nodes:
            raise WireError(
                f"pickle: the message expands to more than max_nodes={lim.max_nodes} values "
                f"(memo references count once per use)"
            )
        if depth > lim.max_depth:
            raise WireError(f"pickle: values nested deeper than max_depth={lim.max_depth}")
        if nbytes > lim.max_bytes:
            raise WireError(f"pickle: the message expands to more than max_bytes={lim.max_bytes} bytes of data")

    def _atom(self, value, nbytes: int = 0) -> _Value:
        return self._new("atom", value, nbytes=nbytes)

    # ------------------------------------------------------------------------------------------- stack
    def _pop(self) -> _Value:
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise WireError("pickle: stack underflow")
        return self.stack.pop()

    def _pop_mark(self) -> list[_Value]:
        if not self.marks:
            raise WireError("pickle: no MARK to pop to")
        at = self.marks.pop()
        items, self.stack[at:] = self.stack[at:], []
        return items

    def _top_container(self, kind: str, what: str) -> _Value:
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise WireError(f"pickle: {what} with nothing to add to")
        target = self.stack[-1]
        if target.kind != kind:
            raise WireError(f"pickle: {what} on a {target.kind}, expected a {kind}")
        if target.shared:
            raise WireError(f"pickle: {what} on a {kind} that is already shared (cycles and late changes are refused)")
        return target

    def _extend(self, target: _Value, items: list[_Value]) -> None:
        """Add children to a container on the stack, after checking what it would cost."""
        if any(i is target for i in items):
            raise WireError("pickle: a container cannot contain itself")
        nodes = target.nodes + sum(i.nodes for i in items)
        depth = max(target.depth, 1 + max(i.depth for i in items)) if items else target.depth
        nbytes = target.nbytes + sum(i.nbytes for i in items)
        self._check(nodes, depth, nbytes)
        for i in items:
            i.shared = True
        target.nodes, target.depth, target.nbytes = nodes, depth, nbytes
        target.payload.extend(items)

    # ------------------------------------------------------------------------------------------- run
    def run(self):
        read = self.stream.read
        for _ in range(self.limits.max_opcodes):
            pos = self.stream.tell()
            code = read(1)
            if not code:
                raise WireError("pickle: the message ends before STOP (truncated)")
            op = _OPCODES.get(code)
            handler = getattr(self, f"op_{op.name}", None) if op else None
            if handler is None or op is None:
                name = op.name if op else f"byte 0x{code[0]:02x}"
                raise WireError(
                    f"pickle: opcode {name} at byte {pos} is not allowed (only plain values, numeric "
                    f"numpy arrays and PIL images may be sent)"
                )
            try:
                arg = op.arg.reader(self.stream) if op.arg is not None else None
            except ValueError as e:
                raise WireError(
                    f"pickle: argument of {op.name} at byte {pos} is truncated or malformed ({e})"[:300]
                ) from None
            if op.name == "STOP":
                if len(self.stack) != 1 or self.marks:
                    raise WireError(
                        f"pickle: STOP with {len(self.stack)} values and {len(self.marks)} marks on the stack"
                    )
                return _materialize(self.stack[0], self.limits)
            handler(arg)
        raise WireError(f"pickle: more than max_opcodes={self.limits.max_opcodes} opcodes")

    # ---------------------------------------------------------------------------------------- opcodes
    def op_PROTO(self, arg):
        if not 2 <= arg <= 5:
            raise WireError(f"pickle: protocol {arg} is not read (2-5 are)")

    def op_FRAME(self, arg):
        pass  # framing only groups the opcodes that follow

    def op_MARK(self, arg):
        self.marks.append(len(self.stack))

    def op_STOP(self, arg):  # handled in run(); present so that STOP is an allowed opcode
        raise AssertionError

    def op_NONE(self, arg):
        self.stack.append(self._atom(None))

    def op_NEWTRUE(self, arg):
        self.stack.append(self._atom(True))

    def op_NEWFALSE(self, arg):
        self.stack.append(self._atom(False))

    def op_BININT(self, arg):
        self.stack.append(self._atom(arg))

    op_BININT1 = op_BININT2 = op_LONG1 = op_BINFLOAT = op_BININT

    def op_BINUNICODE(self, arg):
        self.stack.append(self._atom(arg, len(arg)))

    op_SHORT_BINUNICODE = op_BINUNICODE8 = op_BINUNICODE

    def op_BINBYTES(self, arg):
        self.stack.append(self._atom(bytes(arg), len(arg)))

    op_SHORT_BINBYTES = op_BINBYTES8 = op_BYTEARRAY8 = op_BINBYTES

    def op_EMPTY_LIST(self, arg):
        self.stack.append(self._new("list", []))

    def op_EMPTY_DICT(self, arg):
        self.stack.append(self._new("dict", []))

    def op_EMPTY_TUPLE(self, arg):
        self.stack.append(self._new("tuple", ()))

    def _tuple(self, items: list[_Value]) -> None:
        self.stack.append(self._new("tuple", tuple(items), items))

    def op_TUPLE(self, arg):
        self._tuple(self._pop_mark())

    def op_TUPLE1(self, arg):
        self._tuple([self._pop()])

    def op_TUPLE2(self, arg):
        b, a = self._pop(), self._pop()
        self._tuple([a, b])

    def op_TUPLE3(self, arg):
        c, b, a = self._pop(), self._pop(), self._pop()
        self._tuple([a, b, c])

    def op_APPEND(self, arg):
        item = self._pop()
        self._extend(self._top_container("list", "APPEND"), [item])

    def op_APPENDS(self, arg):
        items = self._pop_mark()
        self._extend(self._top_container("list", "APPENDS"), items)

    def op_SETITEM(self, arg):
        value, key = self._pop(), self._pop()
        self._extend(self._top_container("dict", "SETITEM"), [key, value])

    def op_SETITEMS(self, arg):
        items = self._pop_mark()
        if len(items) % 2:
            raise WireError("pickle: SETITEMS with an odd number of keys and values")
        self._extend(self._top_container("dict", "SETITEMS"), items)

    def op_MEMOIZE(self, arg):
        self.op_BINPUT(len(self.memo))

    def op_BINPUT(self, arg):
        if not self.stack:
            raise WireError("pickle: memo PUT with an empty stack")
        self.memo[arg] = self.stack[-1]

    op_LONG_BINPUT = op_BINPUT

    def op_BINGET(self, arg):
        try:
            value = self.memo[arg]
        except KeyError:
            raise WireError(f"pickle: memo GET of {arg}, which was never PUT") from None
        value.shared = True
        self.stack.append(value)

    op_LONG_BINGET = op_BINGET

    def _global(self, module, name) -> None:
        role = _GLOBALS.get((module, name)) if isinstance(module, str) and isinstance(name, str) else None
        if role is None:
            raise WireError(
                f"pickle: global {str(module)[:60]}.{str(name)[:60]} is not allowed (only dicts, lists, "
                f"str, numbers, numeric numpy arrays and PIL images may be sent)"
            )
        self.stack.append(self._new("global", (role, f"{module}.{name}")))

    def op_GLOBAL(self, arg):
        self._global(*arg.split(" ", 1))

    def op_STACK_GLOBAL(self, arg):
        name, module = self._pop(), self._pop()
        self._global(module.payload if module.kind == "atom" else None, name.payload if name.kind == "atom" else None)

    def op_REDUCE(self, arg):
        args, func = self._pop(), self._pop()
        if func.kind != "global" or args.kind != "tuple":
            raise WireError(f"pickle: REDUCE of a {func.kind} with a {args.kind}; only whitelisted globals are called")
        self.stack.append(_call(self, func.payload, args))

    def op_NEWOBJ(self, arg):
        args, cls = self._pop(), self._pop()
        if cls.kind != "global" or cls.payload[0] != "image" or args.kind != "tuple" or args.payload:
            what = cls.payload[1] if cls.kind == "global" else cls.kind
            raise WireError(f"pickle: NEWOBJ of {what} is not allowed (only PIL.Image.Image with no arguments)")
        self.stack.append(self._new("image", None))

    def op_BUILD(self, arg):
        state = self._pop()
        if not self.stack:
            raise WireError("pickle: BUILD with nothing to build")
        target = self.stack[-1]
        if target.kind == "global":
            raise WireError(f"pickle: BUILD on the global {target.payload[1]} is refused (it would change a class)")
        if target.kind not in ("dtype", "array", "image") or target.built or target.shared:
            raise WireError(
                f"pickle: BUILD on a {target.kind} is refused (only once, on a new numpy dtype, array or PIL image)"
            )
        self.stack[-1] = _build(self, target, state)


# ------------------------------------------------------------------------------------------- numpy and PIL as data
def _atoms(v: _Value, what: str) -> tuple:
    if v.kind != "tuple" or any(i.kind != "atom" for i in v.payload):
        raise WireError(f"pickle: {what} must be a tuple of plain values")
    return tuple(i.payload for i in v.payload)


def _call(m: _Machine, func: tuple[str, str], args: _Value) -> _Value:
    role, name = func
    a = args.payload
    if role == "encode":  # protocol 2 spells bytes as _codecs.encode(str, "latin1")
        items = _atoms(args, "_codecs.encode's arguments")
        if len(items) != 2 or not isinstance(items[0], str) or items[1] not in ("latin1", "latin-1"):
            raise WireError("pickle: _codecs.encode is allowed for (str, 'latin1') only")
        try:
            return m._atom(items[0].encode("latin1"), len(items[0]))
        except UnicodeEncodeError:
            raise WireError("pickle: _codecs.encode of text outside latin-1") from None
    if role == "dtype":
        code = a[0].payload if a and a[0].kind == "atom" else None
        if not isinstance(code, str) or len(code) > 8:
            raise WireError(f"pickle: numpy.dtype({code!r:.40}) is not a plain dtype code")
        return m._new("dtype", {"code": code, "byteorder": ""})
    if role == "reconstruct":  # numpy's pickles: _reconstruct(ndarray, (0,), b"b"), then BUILD with the state
        if len(a) != 3 or a[0].kind != "global" or a[0].payload[0] != "ndarray":
            raise WireError(f"pickle: {name} is allowed for numpy.ndarray only")
        return m._new("array", None)
    if role == "frombuffer":  # protocol 5: _frombuffer(buffer, dtype, shape, order)
        if len(a) != 4 or a[1].kind != "dtype":
            raise WireError(f"pickle: {name} needs (bytes, dtype, shape, order)")
        array = m._new("array", (a[1], _atoms(a[2], "an array shape"), a[0].payload, a[3].payload), [a[0]])
        array.built = True
        return array
    if role == "scalar":
        if len(a) != 2 or a[0].kind != "dtype" or not isinstance(a[1].payload, bytes):
            raise WireError(f"pickle: {name} needs (dtype, bytes)")
        return m._new("scalar", (a[0], a[1].payload), [a[1]])
    raise WireError(f"pickle: {name} cannot be called")


def _build(m: _Machine, target: _Value, state: _Value) -> _Value:
    if target.kind == "dtype":
        items = _atoms(state, "a dtype state")
        if len(items) < 2 or items[1] not in ("<", ">", "|", "="):
            raise WireError(f"pickle: dtype state {items!r:.80} is not understood")
        built = m._new("dtype", {**target.payload, "byteorder": items[1] if items[1] in "<>" else ""})
    elif target.kind == "array":
        s: tuple | list = state.payload if state.kind == "tuple" else ()
        if len(s) != 5 or s[2].kind != "dtype" or s[4].kind != "atom":
            raise WireError("pickle: an array state must be (version, shape, dtype, is_fortran, data)")
        built = m._new(
            "array", (s[2], _atoms(s[1], "an array shape"), s[4].payload, "F" if s[3].payload else "C"), [s[4]]
        )
    else:
        s = state.payload if state.kind == "list" else []
        if len(s) not in (4, 5) or any(v.kind not in ("atom", "dict", "tuple") for v in s):
            raise WireError("pickle: a PIL image state must be [info, mode, (width, height), palette, data]")
        mode, size, data = s[1].payload, _atoms(s[2], "a PIL image size"), s[-1].payload
        if len(s) == 5 and s[3].payload is not None:
            raise WireError("pickle: PIL images with a palette are not read (send RGB, RGBA or L)")
        built = m._new("image", (mode, size, data), [state])
    built.built = True
    return built


def _dtype(spec: _Value) -> np.dtype:
    p = spec.payload
    try:
        dt = np.dtype(p["byteorder"] + p["code"].lstrip("<>|="))
    except TypeError as e:
        raise WireError(f"pickle: dtype {p['code']!r} is not a numpy dtype ({e})") from None
    return check_dtype(dt)


def check_dtype(dt: np.dtype) -> np.dtype:
    if dt.kind not in ALLOWED_DTYPE_KINDS or dt.fields is not None:
        raise WireError(f"dtype {dt!r:.80} is not allowed (only bool, int, uint and float arrays)")
    return dt


def check_shape(shape, limits: Limits) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > 8 or not all(type(s) is int and s >= 0 for s in shape):
        raise WireError(f"array shape {shape!r:.80} is not a tuple of at most 8 sizes")
    if math.prod(shape) > limits.max_array_elements:
        raise WireError(f"array shape {shape} has more than max_array_elements={limits.max_array_elements} elements")
    return shape


def _array(v: _Value, limits: Limits) -> np.ndarray:
    if not v.built:
        raise WireError("pickle: an array was created but never given its data (no BUILD)")
    dtype, shape, data, order = v.payload
    dt, shape = _dtype(dtype), check_shape(shape, limits)
    if not isinstance(data, bytes) or order not in ("C", "F"):
        raise WireError(
            f"pickle: an array needs bytes of data and order C or F, got {type(data).__name__}, {order!r:.10}"
        )
    if math.prod(shape) * dt.itemsize != len(data):
        raise WireError(
            f"pickle: array of shape {shape} and type {dt.str} needs {math.prod(shape) * dt.itemsize} "
            f"bytes, got {len(data)}"
        )
    return np.frombuffer(data, dt).reshape(shape, order=order).copy()


def _image(v: _Value, limits: Limits) -> np.ndarray:
    if not v.built:
        raise WireError("pickle: a PIL image was created but never given its state (no BUILD)")
    mode, size, data = v.payload
    if mode not in IMAGE_CHANNELS:
        raise WireError(f"pickle: PIL image mode {mode!r:.20} is not read (RGB, RGBA and L are)")
    if len(size) != 2 or not all(type(s) is int and 1 <= s <= limits.max_image_side for s in size):
        raise WireError(f"pickle: PIL image size {size!r:.40} is not (width, height) within 1..{limits.max_image_side}")
    (w, h), c = size, IMAGE_CHANNELS[mode]
    if not isinstance(data, bytes) or len(data) != w * h * c:
        got = len(data) if isinstance(data, bytes) else type(data).__name__
        raise WireError(f"pickle: a {w}x{h} {mode} image needs {w * h * c} bytes of data, got {got}")
    pixels = np.frombuffer(data, np.uint8).reshape(h, w, c)
    return np.repeat(pixels, 3, axis=2) if c == 1 else np.ascontiguousarray(pixels[..., :3])


def _materialize(v: _Value, limits: Limits):
    """The machine's values as Python values; the walk is bounded by the limits already checked."""
    kind = v.kind
    if kind == "atom":
        return v.payload
    if kind == "list":
        return [_materialize(i, limits) for i in v.payload]
    if kind == "tuple":
        return tuple(_materialize(i, limits) for i in v.payload)
    if kind == "dict":
        items = v.payload
        keys = items[0::2]
        if any(k.kind != "atom" for k in keys):
            raise WireError("pickle: dict keys must be str, numbers, bytes or None")
        return {k.payload: _materialize(val, limits) for k, val in zip(keys, items[1::2], strict=True)}
    if kind == "array":
        return _array(v, limits)
    if kind == "image":
        return _image(v, limits)
    if kind == "scalar":
        dtype, data = v.payload
        dt = _dtype(dtype)
        if len(data) != dt.itemsize:
            raise WireError(f"pickle: a numpy {dt} scalar needs {dt.itemsize} bytes, got {len(data)}")
        return np.frombuffer(data, dt)[0]
    raise WireError(f"pickle: a bare {v.payload[1] if kind == 'global' else 'numpy ' + kind} is not a value")


def read_pickle(data: bytes, limits: Limits = Limits()):
    """Decode a protocol 2-5 pickle of plain values, numeric numpy arrays and PIL images; WireError otherwise."""
    if len(data) > limits.max_bytes + (1 << 16):
        raise WireError(f"pickle: a message of {len(data)} bytes exceeds max_bytes={limits.max_bytes}")
    return _Machine(data, limits).run()
