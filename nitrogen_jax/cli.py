"""The `nitrogen-jax` console command: one subcommand per task, each parsed by tyro from a frozen dataclass.

A command's dataclass states every option once (name, type, default, help from its docstring) and runs itself with
`run()`. Only the module of the command being run is imported, so `nitrogen-jax check-shards` never loads jax.
A dataclass may define `default_for(argv)` when its defaults depend on another flag (train's `--preset`). A
command runs as `args.run()`, or as `run(args)` of its module where the dataclass has no `run` method.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import tyro

# name -> (module, dataclass, one line of help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "sample": ("nitrogen_jax.commands", "SampleArgs", "sample one action chunk from a frame and print it"),
    "convert": (
        "nitrogen_jax.commands",
        "ConvertArgs",
        "import the release's ng.pt (or a SigLIP tower) into a Policy directory",
    ),
    "sample-data": (
        "nitrogen_jax.data.cli",
        "SampleDataArgs",
        "build the small real Atari dataset (videos, labels) and its shards",
    ),
    "preprocess": (
        "nitrogen_jax.data.cli",
        "PreprocessArgs",
        "labels in the public layout + local videos -> TFRecord shards (Apache Beam)",
    ),
    "check-shards": ("nitrogen_jax.data.cli", "CheckShardsArgs", "verify every record's framing and CRCs"),
    "train": ("nitrogen_jax.train.cli", "TrainArgs", "train a policy on a folder of TFRecord shards"),
    "finetune": ("nitrogen_jax.train.cli", "FinetuneArgs", "fine-tune a pretrained policy"),
    "ablate-chunk": (
        "nitrogen_jax.train.ablate_chunk",
        "AblateChunkArgs",
        "train one policy per chunk length and compare them (table + plot)",
    ),
    "extract": (
        "nitrogen_jax.data.overlay.extract",
        "ExtractArgs",
        "read controller inputs off overlay videos into labels in the public layout",
    ),
    "train-parser": (
        "nitrogen_jax.data.overlay.train_parser",
        "TrainParserArgs",
        "train the overlay parser on rendered overlays (the shipped weights' recipe)",
    ),
    "overlay-synth": (
        "nitrogen_jax.data.overlay.synth",
        "MakeOverlayVideosArgs",
        "render synthetic overlay videos over real gameplay, with their per-frame truth",
    ),
    "overlay-sheet": (
        "nitrogen_jax.data.overlay.contact_sheet",
        "ContactSheetArgs",
        "draw every overlay style, neutral and pressed, on one PNG",
    ),
    "play": (
        "nitrogen_jax.sim_bridge.cli",
        "PlayArgs",
        "play a real game with a policy, recorded in the dataset layout",
    ),
    "serve": ("nitrogen_jax.sim_bridge.cli", "ServeArgs", "serve a policy over the release's ZeroMQ protocol"),
    "curve-keys": (
        "nitrogen_jax.sim_bridge.curve_keys",
        "CurveKeysArgs",
        "create ZeroMQ CURVE keys so that serve admits only your clients",
    ),
    "eval": (
        "nitrogen_jax.sim_bridge.cli",
        "EvalArgs",
        "task success on the suite beside a random-input baseline (markdown report)",
    ),
    "e2e": (
        "nitrogen_jax.e2e.cli",
        "E2EArgs",
        "the main job end to end: record, extract, preprocess, train, evaluate, report (--stage for one)",
    ),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: nitrogen-jax COMMAND [OPTIONS]   (nitrogen-jax COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def parse(argv: list[str]) -> Any:
    """argv (without the program name) -> the command's dataclass instance. Exits with usage on a bad command."""
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"nitrogen-jax: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    module, cls_name, help_ = COMMANDS[name]
    cls = getattr(importlib.import_module(module), cls_name)
    default = cls.default_for(rest) if hasattr(cls, "default_for") else None
    return tyro.cli(cls, args=rest, prog=f"nitrogen-jax {name}", description=help_, default=default)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    try:
        # a command's dataclass runs itself, or its module's run(args) does
        code = args.run() if hasattr(args, "run") else importlib.import_module(type(args).__module__).run(args)
        return int(code or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"nitrogen-jax {argv[0]}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
