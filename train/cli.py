"""`nitrogen-jax train` and `nitrogen-jax finetune`: the training loop from the command line.

    nitrogen-jax train --preset tiny --dataset shards/ --steps 2000 --batch-size 32 --output runs/tiny
    nitrogen-jax finetune --pretrained converted_ng/ --dataset shards/ --steps 2000 --output runs/ft
    nitrogen-jax train --config-of converted_ng/ --dataset shards/ --steps 2000 --output runs/scratch  # baseline
"""
from __future__ import annotations

import argparse
import math
import sys

from nitrogen_jax.train.config import TrainConfig

_DEFAULTS = TrainConfig()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a policy (from scratch) on a folder of TFRecord shards")
    arch = p.add_mutually_exclusive_group()
    arch.add_argument("--preset", default=None, help="model preset (tiny, seed, nitrogen-500m); default tiny")
    arch.add_argument("--config-of", metavar="POLICY_DIR",
                      help="take the architecture of a Policy directory, random init (the from-scratch baseline "
                           "of a fine-tune)")
    p.add_argument("--pretrained", metavar="POLICY_DIR", help="start from these params (what `finetune` does)")
    p.add_argument("--action-horizon", type=int, default=None, help="override the preset's chunk length")
    _add_common(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("finetune", help="fine-tune a pretrained policy (a converted release checkpoint or our own)")
    p.add_argument("--pretrained", metavar="POLICY_DIR", required=True,
                   help="a Policy directory (`nitrogen-jax convert` output, or a training run's policy/)")
    p.add_argument("--preset", default=None, help="optional: fail unless the checkpoint has this architecture")
    _add_common(p)
    p.set_defaults(func=_run, config_of=None, action_horizon=None)


def _add_common(p: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    p.add_argument("--dataset", required=True, help="folder of TFRecord shards (the data layer's output)")
    p.add_argument("--eval-dataset", help="folder of validation shards (val_loss under the EMA params)")
    p.add_argument("--eval-batches", type=int, default=4, help="validation batches per evaluation")
    p.add_argument("--output", required=True, help="run directory: checkpoints/, logs/, policy/")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help=f"optimiser steps (default {d.num_steps})")
    length.add_argument("--epochs", type=float, help="passes over the dataset (converted to steps)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size (all devices)")
    p.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup", type=int, default=d.warmup_steps, help="linear warm-up steps")
    p.add_argument("--schedule", choices=("cosine", "constant"), default=d.schedule,
                   help="after warm-up: cosine to 0.1 x lr at the last step, or constant")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip_norm, help="global gradient-norm clip")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum_steps, help="micro-batches per optimiser step")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--freeze", action="append", default=[], metavar="REGEX",
                   help="freeze parameters whose path matches, e.g. 'vision/.*' (repeatable)")
    p.add_argument("--remat", action="store_true", help="recompute activations in the backward pass (less memory)")
    p.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default=None,
                   help="compute precision (params stay float32); default: the config's")
    p.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint interval in steps")
    p.add_argument("--keep", type=int, default=d.keep_checkpoints, help="checkpoints to keep")
    p.add_argument("--eval-every", type=int, default=0, help="validation interval in steps (0: at the end only)")
    p.add_argument("--mesh", default="-1,1,1", help="device mesh data,fsdp[,tensor]; -1 takes the rest")
    p.add_argument("--fsdp-min-size", type=int, default=d.fsdp_min_size, help="smaller params stay replicated")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the output's latest checkpoint (default); --no-resume refuses to reuse it")
    p.add_argument("--num-workers", type=int, default=0, help="Grain worker processes for decoding/augmenting")
    p.add_argument("--no-augment", action="store_true", help="turn off the loader's augmentation")
    p.add_argument("--no-export", action="store_true", help="skip writing policy/ at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize (cluster auto-detection or the flags below)")
    p.add_argument("--coordinator-address", help="host:port of process 0 (with --distributed)")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)


def model_config_from_args(args):
    from nitrogen_jax.config import get_config
    from nitrogen_jax.train.checkpoint import check_same_architecture, read_policy_config

    overrides = {}
    if args.compute_dtype:
        overrides["compute_dtype"] = args.compute_dtype
    if args.action_horizon:
        overrides["action_horizon"] = args.action_horizon
    source = args.pretrained or args.config_of
    if source:
        cfg = read_policy_config(source).replace(**overrides)
        if args.preset:
            check_same_architecture(get_config(args.preset, **overrides), cfg, source)
        return cfg
    return get_config(args.preset or "tiny", **overrides)


def train_config_from_args(args, dataset_len: int | None = None) -> TrainConfig:
    from nitrogen_jax.train.sharding import parse_mesh_shape

    if args.epochs is not None:
        steps = max(1, math.ceil(args.epochs * dataset_len / args.batch_size))
    else:
        steps = args.steps or _DEFAULTS.num_steps
    return TrainConfig(
        learning_rate=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup, schedule=args.schedule,
        grad_clip_norm=args.grad_clip, grad_accum_steps=args.grad_accum, ema_decay=args.ema_decay,
        freeze=tuple(args.freeze), remat=args.remat, num_steps=steps, batch_size=args.batch_size, seed=args.seed,
        mesh_shape=parse_mesh_shape(args.mesh), fsdp_min_size=args.fsdp_min_size, save_every=args.save_every,
        keep_checkpoints=args.keep, eval_every=args.eval_every)


def _run(args) -> int:
    if args.distributed:
        import jax

        jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    import jax

    from nitrogen_jax.train.data import check_dataset_dir, dataset_size, take_batches, tfrecord_batches
    from nitrogen_jax.train.loop import NonFiniteLoss, train

    check_dataset_dir(args.dataset)
    if args.eval_dataset:
        check_dataset_dir(args.eval_dataset)
    model_config = model_config_from_args(args)
    cfg = train_config_from_args(args, dataset_size(args.dataset) if args.epochs is not None else None)
    eval_batches = None
    if args.eval_dataset:
        eval_batches = take_batches(
            tfrecord_batches(args.eval_dataset, augment=False, shuffle=False), args.eval_batches,
            batch_size=cfg.batch_size // jax.process_count(), seed=0, action_horizon=model_config.action_horizon,
            shard_index=jax.process_index(), shard_count=jax.process_count())
    batches = tfrecord_batches(args.dataset, augment=not args.no_augment, num_workers=args.num_workers)
    try:
        summary = train(model_config, cfg, batches, args.output, pretrained=args.pretrained, resume=args.resume,
                        eval_batches=eval_batches, export=not args.no_export, progress=not args.no_progress)
    except NonFiniteLoss as e:
        print(f"nitrogen-jax {args.command}: {e}", file=sys.stderr)
        return 3
    m = summary.last_metrics
    status = "preempted (SIGTERM), checkpoint saved" if summary.preempted else "done"
    print(f"{status}: steps {summary.start_step} -> {summary.final_step}, loss {m.get('loss', float('nan')):.4f}"
          + (f", val_loss {m['val_loss']:.4f}" if "val_loss" in m else "")
          + (f"; policy in {summary.policy_dir}" if summary.policy_dir else ""))
    return 0
