"""`nitrogen-jax train` and `nitrogen-jax finetune`: the training loop from the command line.

    nitrogen-jax train --preset tiny --dataset shards/ --num-steps 2000 --batch-size 32 --out runs/tiny
    nitrogen-jax finetune --pretrained converted_ng/ --dataset shards/ --num-steps 2000 --out runs/ft
    nitrogen-jax train --config-of converted_ng/ --dataset shards/ --num-steps 2000 --out runs/scratch  # baseline

Every `TrainConfig` field is a flag of its own name (`--learning-rate`, `--adam-b2`, `--mesh-shape 1 8 1`), and
every architecture field of `train` is a `--model.*` flag whose default comes from `--preset` or `--config-of`
(`--model.action-horizon 16`, `--model.dit.num-layers 4`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Annotated

import tyro

from nitrogen_jax.config import PRESETS, NitroGenConfig, get_config
from nitrogen_jax.train.config import TrainConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunArgs:
    """What `train` and `finetune` share: data, run directory, the TrainConfig and the process set-up."""

    dataset: Path
    """Folder of TFRecord shards (the data layer's output)."""
    out: Path
    """Run directory: checkpoints/, logs/, policy/."""
    eval_dataset: Path | None = None
    """Folder of validation shards (val_loss under the EMA params)."""
    eval_batches: int = 4
    """Validation batches per evaluation."""
    epochs: float | None = None
    """Passes over the dataset, converted to --num-steps (which it then overrides)."""
    train: Annotated[TrainConfig, tyro.conf.arg(name="")] = TrainConfig()
    resume: bool = True
    """Continue from the run directory's latest checkpoint; --no-resume refuses to reuse one."""
    num_workers: int = 0
    """Grain worker processes for decoding and augmenting."""
    augment: bool = True
    """The loader's augmentations (photometric and geometric)."""
    export: bool = True
    """Write the EMA policy to policy/ at the end."""
    progress: bool = True
    """Show a progress bar."""
    distributed: bool = False
    """Multi-host: call jax.distributed.initialize (cluster auto-detection or the three flags below)."""
    coordinator_address: str | None = None
    """host:port of process 0 (with --distributed)."""
    num_processes: int | None = None
    process_id: int | None = None

    def model_config(self) -> NitroGenConfig:
        raise NotImplementedError

    @property
    def pretrained_dir(self) -> Path | None:
        return None

    def run(self) -> int:
        if self.distributed:
            import jax

            jax.distributed.initialize(self.coordinator_address, self.num_processes, self.process_id)
        import jax

        from nitrogen_jax.train.data import check_dataset_dir, dataset_size, take_batches, tfrecord_batches
        from nitrogen_jax.train.loop import NonFiniteLoss, train

        check_dataset_dir(self.dataset)
        if self.eval_dataset:
            check_dataset_dir(self.eval_dataset)
        model_config = self.model_config()
        cfg = self.train
        if self.epochs is not None:
            cfg = cfg.replace(num_steps=max(1, math.ceil(self.epochs * dataset_size(self.dataset) / cfg.batch_size)))
        eval_batches = None
        if self.eval_dataset:
            eval_batches = take_batches(
                tfrecord_batches(self.eval_dataset, augment=False, shuffle=False),
                self.eval_batches,
                batch_size=cfg.batch_size // jax.process_count(),
                seed=0,
                action_horizon=model_config.action_horizon,
                shard_index=jax.process_index(),
                shard_count=jax.process_count(),
            )
        batches = tfrecord_batches(self.dataset, augment=self.augment, num_workers=self.num_workers)
        try:
            summary = train(
                model_config,
                cfg,
                batches,
                self.out,
                pretrained=self.pretrained_dir,
                resume=self.resume,
                eval_batches=eval_batches,
                export=self.export,
                progress=self.progress,
            )
        except NonFiniteLoss as e:
            print(f"nitrogen-jax: {e}", file=sys.stderr)
            return 3
        m = summary.last_metrics
        status = "preempted (SIGTERM), checkpoint saved" if summary.preempted else "done"
        losses = ", ".join(f"{k} {m[k]:.4f}" for k in ("loss", "val_loss") if k in m)
        print(
            f"{status}: steps {summary.start_step} -> {summary.final_step}"
            + (f", {losses}" if losses else "")
            + (f"; policy in {summary.policy_dir}" if summary.policy_dir else "")
        )
        return 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainArgs(RunArgs):
    """Train a policy on a folder of TFRecord shards (from scratch, or from --pretrained params)."""

    preset: str = "tiny"
    """Model preset whose architecture --model.* starts from (tiny, seed, nitrogen-500m)."""
    config_of: Path | None = None
    """Take the architecture of a Policy directory, random init (the from-scratch baseline of a fine-tune)."""
    pretrained: Path | None = None
    """Start from the params of this Policy directory."""
    model: NitroGenConfig = PRESETS["tiny"]
    """The architecture; its defaults follow --preset, or --config-of / --pretrained when given."""

    @classmethod
    def default_for(cls, argv: list[str]) -> TrainArgs:
        """The defaults the rest of argv overrides: `model` is the chosen preset's or Policy directory's."""
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--preset", default=cls.preset)
        pre.add_argument("--config-of", "--pretrained", dest="source", default=None)
        known, _ = pre.parse_known_args(argv)
        return cls(dataset=tyro.MISSING, out=tyro.MISSING, model=_architecture(known.preset, known.source))

    def model_config(self) -> NitroGenConfig:
        return self.model

    @property
    def pretrained_dir(self) -> Path | None:
        return self.pretrained


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneArgs(RunArgs):
    """Fine-tune a pretrained policy (a converted release checkpoint or one of ours)."""

    pretrained: Path
    """A Policy directory (`nitrogen-jax convert` output, or a training run's policy/)."""
    preset: str | None = None
    """Fail unless the checkpoint has this preset's architecture."""
    compute_dtype: str | None = None
    """Compute precision (float32, bfloat16; params stay float32); default: the checkpoint's."""

    def model_config(self) -> NitroGenConfig:
        from nitrogen_jax.train.checkpoint import check_same_architecture, read_policy_config

        overrides = {"compute_dtype": self.compute_dtype} if self.compute_dtype else {}
        cfg = read_policy_config(self.pretrained).replace(**overrides)
        if self.preset:
            check_same_architecture(get_config(self.preset, **overrides), cfg, str(self.pretrained))
        return cfg

    @property
    def pretrained_dir(self) -> Path | None:
        return self.pretrained


def _architecture(preset: str, source: str | None) -> NitroGenConfig:
    if source is None:
        return get_config(preset)
    from nitrogen_jax.train.checkpoint import read_policy_config

    try:
        return read_policy_config(source)
    except FileNotFoundError:
        return get_config(preset)  # reported by the run, with the path, once the arguments are parsed
