"""The optimiser: AdamW with linear warm-up then cosine decay, global-norm clipping, and frozen parameters.

Frozen parameters (matched by regular expression on their '/'-joined path) get no optimiser state and no update;
`step.make_train_step` also stops their gradients, so XLA never computes them.
"""

from __future__ import annotations

import re

import jax
import optax

from nitrogen_jax.train.config import TrainConfig


def param_path(path) -> str:
    """A pytree key path -> 'dit/block_0/attn/query/kernel'."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def trainable_mask(params, freeze_patterns) -> dict:
    """bool pytree like params: False where a freeze pattern matches the whole path.

    A pattern that matches no parameter is an error: a typo would otherwise silently train everything.
    """
    patterns = [re.compile(p) for p in freeze_patterns]
    used = set()

    def trainable(path, _):
        name = param_path(path)
        hits = [p.pattern for p in patterns if p.fullmatch(name)]
        used.update(hits)
        return not hits

    mask = jax.tree_util.tree_map_with_path(trainable, params)
    unused = [p.pattern for p in patterns if p.pattern not in used]
    if unused:
        tops = sorted(params)
        raise ValueError(
            f"freeze pattern(s) {unused} match no parameter path; paths look like "
            f"'{tops[0]}/...', top-level names are {tops}"
        )
    return mask


def effective_warmup(cfg: TrainConfig) -> int:
    """The warm-up the schedule uses: `warmup_steps`, except that a run no longer than its warm-up (which would
    never reach its peak rate) warms up over its first tenth instead."""
    return cfg.warmup_steps if cfg.warmup_steps < cfg.num_steps else max(1, cfg.num_steps // 10)


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
    """0 -> lr linearly over the warm-up, then cosine to final_lr_ratio * lr at num_steps (or constant)."""
    warmup = effective_warmup(cfg)
    if cfg.schedule == "constant":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, cfg.learning_rate, warmup), optax.constant_schedule(cfg.learning_rate)],
            [warmup],
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(cfg.num_steps, warmup + 1),
        end_value=cfg.final_lr_ratio * cfg.learning_rate,
    )


def make_optimizer(cfg: TrainConfig, trainable) -> optax.GradientTransformation:
    """clip(global norm) -> AdamW(schedule) on trainable params; frozen params: zero update, no state."""
    adamw = optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip_norm),
        optax.adamw(learning_rate_schedule(cfg), b1=cfg.adam_b1, b2=cfg.adam_b2, weight_decay=cfg.weight_decay),
    )
    labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
    return optax.multi_transform({"train": adamw, "frozen": optax.set_to_zero()}, labels)
