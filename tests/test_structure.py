"""The package's shape: no import cycles, and the light entry points stay light."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nitrogen_jax

PACKAGE_DIR = Path(nitrogen_jax.__file__).parent

# What a Beam worker, `check-shards` and a serving client import: none of it may pull in jax or flax.
LIGHT_MODULES = (
    "nitrogen_jax",
    "nitrogen_jax.cli",
    "nitrogen_jax.data",
    "nitrogen_jax.data.cli",
    "nitrogen_jax.data.layout",
    "nitrogen_jax.data.tfrecord",
    "nitrogen_jax.data.example",
    "nitrogen_jax.data.preprocess",
    "nitrogen_jax.data.pipeline",
    "nitrogen_jax.sim_bridge.client",
    "nitrogen_jax.sim_bridge.wire",
)
HEAVY = ("jax", "flax", "optax", "orbax", "torch", "transformers")


def module_files() -> dict[str, Path]:
    """Every module of the package (through the layer links) by dotted name."""
    mods = {}
    paths = [Path(d) / f for d, _, files in os.walk(PACKAGE_DIR, followlinks=True) for f in files if f.endswith(".py")]
    for path in paths:
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def runtime_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Package modules `path` imports anywhere (function bodies too), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for n in ast.walk(stmt)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    mods = module_files()
    assert {"nitrogen_jax.model", "nitrogen_jax.data.loader", "nitrogen_jax.sim_bridge.server"} <= set(mods)
    graph = {name: runtime_imports(path, name, set(mods)) for name, path in mods.items()}
    assert "nitrogen_jax.model" in graph["nitrogen_jax.convert.release"]  # the graph sees function-level imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_light_entry_points_do_not_import_jax():
    code = (
        "import importlib, json, sys\n"
        f"for m in {LIGHT_MODULES!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_lazy_top_level_names_resolve():
    from nitrogen_jax import Policy, count_parameters, get_config

    assert Policy.__module__ == "nitrogen_jax.policy" and callable(count_parameters) and get_config("tiny")
    assert sorted(nitrogen_jax.__all__) == sorted(nitrogen_jax._EXPORTS)
    try:
        nitrogen_jax.NoSuchThing  # noqa: B018
    except AttributeError as e:
        assert "NoSuchThing" in str(e)
    else:
        raise AssertionError("unknown attributes must raise AttributeError")
