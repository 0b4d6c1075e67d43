"""Read a `torch.save` checkpoint without running anything from the file.

torch's weights-only unpickler allows tensors, containers and primitives. Any other global the file names (a
config class, or something hostile like `os.system`) is replaced by an `Inert` stand-in registered under that
exact name: the unpickler "calls" the stand-in, which only records the arguments and state it was given. So a
config stored as a custom object is still readable as plain data, and nothing named in the file is executed.
"""

from __future__ import annotations

import os
import pickle
from typing import Any


class Inert:
    """Stands in for a global named in a checkpoint; records what the pickle passes and executes nothing."""

    qualified_name = "?"

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.qualified_name} args={self.args!r} state={self.state!r}>"


def _stand_in(qualified_name: str) -> type:
    return type("Inert_" + qualified_name.replace(".", "_"), (Inert,), {"qualified_name": qualified_name})


def load_torch_checkpoint(path: str | os.PathLike) -> tuple[Any, list[str]]:
    """Returns (the unpickled object with tensors as torch.Tensors, the globals that were replaced by stand-ins)."""
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        unsafe = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception as e:  # torch raises several types for non-zip / truncated files
        raise ValueError(f"{path} is not a readable torch checkpoint (zip format expected): {e}") from e
    stand_ins: list[Any] = [(_stand_in(name), name) for name in unsafe]
    try:
        with torch.serialization.safe_globals(stand_ins):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch refuses some modules (os, posix, subprocess, ...) even as stand-ins: such a file is hostile.
        reason = next((line for line in str(e).splitlines() if "GLOBAL" in line), str(e).splitlines()[-1])
        raise ValueError(
            f"{path}: refusing to read the checkpoint: {reason.strip()} (globals named in the file: "
            f"{', '.join(unsafe)})"
        ) from None
    return obj, unsafe


def to_plain(obj: Any) -> Any:
    """Stand-ins and containers -> plain dicts/lists/scalars (config objects such as OmegaConf's keep their data
    in their pickled state: `_content` for containers, `_val` for leaves)."""
    if isinstance(obj, Inert):
        state = obj.state if obj.state is not None else (obj.args[0] if len(obj.args) == 1 else list(obj.args))
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slot state)
        if isinstance(state, dict):
            for key in ("_content", "_val"):
                if key in state:
                    return to_plain(state[key])
        return to_plain(state)
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
