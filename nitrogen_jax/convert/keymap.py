"""Mapping PyTorch state-dict tensors onto our Flax param tree, with a full account of what did not fit.

A key map is {flax path "a/b/kernel": (torch key, transform)}. `apply_key_map` fills every path of the target
tree, and fails with one message listing every missing, mis-shaped and unexpected key, rather than the first.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "copy": lambda w: w,
    "linear": lambda w: w.T,  # torch Linear (out, in) -> Dense kernel (in, out)
    "conv": lambda w: w.transpose(2, 3, 1, 0),  # OIHW -> HWIO
    "embodiment": lambda w: w[0],  # the release's per-embodiment (1, ...) tensors
}

KeyMap = dict[str, tuple[str, str]]


def linear(ours: str, theirs: str) -> KeyMap:
    return {f"{ours}/kernel": (f"{theirs}.weight", "linear"), f"{ours}/bias": (f"{theirs}.bias", "copy")}


def layer_norm(ours: str, theirs: str) -> KeyMap:
    return {f"{ours}/scale": (f"{theirs}.weight", "copy"), f"{ours}/bias": (f"{theirs}.bias", "copy")}


def attention(ours: str, theirs: str, names=("q_proj", "k_proj", "v_proj", "out_proj")) -> KeyMap:
    out: KeyMap = {}
    for our_name, their_name in zip(("query", "key", "value", "out"), names, strict=False):
        out.update(linear(f"{ours}/{our_name}", f"{theirs}.{their_name}"))
    return out


def count_layers(keys: Iterable[str], prefix: str) -> int:
    """Number of consecutive `{prefix}.{i}.` blocks present in the state dict."""
    found = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"\.(\d+)\.", k))}
    n = 0
    while n in found:
        n += 1
    return n


class KeyMismatchError(ValueError):
    pass


@dataclasses.dataclass
class MappingResult:
    params: dict
    used: set[str]
    ignored: list[str]


def apply_key_map(
    key_map: KeyMap, tensors: dict[str, np.ndarray], target: dict, *, source: str, ignore: Iterable[str] = ()
) -> MappingResult:
    """Fill `target` (a tree of arrays or ShapeDtypeStructs) from `tensors` using `key_map`.

    ignore: regexes of source keys that are known and deliberately dropped (e.g. an unused pooling head).
    Raises KeyMismatchError naming every missing, unexpected and mis-shaped key.
    """
    flat_target = flatten_dict(target, sep="/")
    ignore_res = [re.compile(p) for p in ignore]
    missing, misshaped, unmapped_target = [], [], []
    out, used = {}, set()
    for path, spec in flat_target.items():
        if path not in key_map:
            unmapped_target.append(path)
            continue
        key, transform = key_map[path]
        if key not in tensors:
            missing.append(f"{key} (for {path}, expected shape derived from {tuple(spec.shape)})")
            continue
        value = TRANSFORMS[transform](np.asarray(tensors[key], np.float32))
        used.add(key)
        if value.shape != tuple(spec.shape):
            misshaped.append(
                f"{key}: {tuple(np.asarray(tensors[key]).shape)} gives {value.shape} after '{transform}', "
                f"expected {tuple(spec.shape)} for {path}"
            )
            continue
        out[path] = np.ascontiguousarray(value)
    ignored = sorted(k for k in tensors if k not in used and any(r.search(k) for r in ignore_res))
    unexpected = sorted(k for k in tensors if k not in used and k not in ignored)
    problems = []
    for title, items in (
        ("missing keys", missing),
        ("mis-shaped keys", misshaped),
        ("unexpected keys", unexpected),
        ("params with no source key (converter bug)", unmapped_target),
    ):
        if items:
            shown = items[:40] + ([f"... and {len(items) - 40} more"] if len(items) > 40 else [])
            problems.append(f"{len(items)} {title}:\n  " + "\n  ".join(shown))
    if problems:
        raise KeyMismatchError(f"{source} does not match the expected architecture:\n" + "\n".join(problems))
    return MappingResult(unflatten_dict({tuple(k.split("/")): v for k, v in out.items()}), used, ignored)
