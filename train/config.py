"""`TrainConfig`: every setting of a training run that is not the model architecture.

It is saved as JSON beside every checkpoint, so a resumed run can check it continues the same experiment.
Defaults follow the seed description: AdamW, lr 1e-4, weight decay 0.001, 1000 linear warm-up steps.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 1e-4
    """Peak learning rate (AdamW), reached at the end of the warm-up."""
    weight_decay: float = 1e-3
    """AdamW decoupled weight decay."""
    warmup_steps: int = 1000
    """Linear warm-up steps; a run no longer than this warms up over its first tenth instead (and says so)."""
    schedule: str = "cosine"
    """After warm-up: 'cosine' down to final_lr_ratio x learning_rate at the last step, or 'constant'."""
    final_lr_ratio: float = 0.1
    """Where the cosine ends, as a fraction of the peak rate."""
    adam_b1: float = 0.9
    """Adam's first-moment decay."""
    adam_b2: float = 0.999
    """Adam's second-moment decay."""
    grad_clip_norm: float = 1.0
    """Global gradient-norm clip."""
    grad_accum_steps: int = 1
    """Micro-batches per optimiser update: one update averages their gradients (less memory, same batch)."""
    ema_decay: float = 0.9999
    """EMA of the parameters, used for evaluation and export; it ramps up as min(ema_decay, (1+n)/(10+n)), so
    short fine-tunes still move it."""
    freeze: tuple[str, ...] = ()
    """Regular expressions over '/'-joined parameter paths to freeze ('vision/.*' freezes the SigLIP tower)."""
    remat: bool = False
    """Recompute activations in the backward pass: less memory, more compute."""
    num_steps: int = 10_000
    """Optimiser steps of the run."""
    batch_size: int = 32
    """Global batch size over all devices and processes."""
    seed: int = 0
    """Seed of the initialisation, the data order and the noise."""
    mesh_shape: tuple[int, int, int] = (-1, 1, 1)
    """Device mesh (data, fsdp, tensor); -1 takes the remaining devices."""
    fsdp_min_size: int = 2**14
    """Parameters with fewer elements stay replicated rather than FSDP-sharded."""
    save_every: int = 1000
    """Checkpoint interval in steps."""
    keep_checkpoints: int = 3
    """Checkpoints kept on disk."""
    eval_every: int = 0
    """Validation interval in steps (0: at the end only)."""
    checkpoint_dir: str = ""
    """Where checkpoints go: a folder, or a gs:// or s3:// URL that every host writes its shards to and any host
    can resume from; empty: the run directory's checkpoints/."""

    def __post_init__(self):
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        for name in ("num_steps", "batch_size", "grad_accum_steps", "save_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by grad_accum_steps {self.grad_accum_steps}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        object.__setattr__(self, "freeze", tuple(self.freeze))
        object.__setattr__(self, "mesh_shape", tuple(self.mesh_shape))

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
