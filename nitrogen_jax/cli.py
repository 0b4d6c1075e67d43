"""The `nitrogen-jax` console command.

Each layer contributes its subcommands through a module with `register(subparsers)`; a subcommand sets
`func(args) -> int | None` with `set_defaults`. Modules are imported only when the command runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMAND_MODULES = (
    "nitrogen_jax.commands",
    "nitrogen_jax.train.cli",
    "nitrogen_jax.data.cli",
    "nitrogen_jax.sim_bridge.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nitrogen-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"nitrogen-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
