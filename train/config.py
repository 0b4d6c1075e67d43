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
    # Optimiser. After warm-up the learning rate follows a cosine from `learning_rate` down to
    # `final_lr_ratio * learning_rate` at `num_steps` ("cosine"), or stays flat ("constant").
    learning_rate: float = 1e-4
    weight_decay: float = 1e-3
    warmup_steps: int = 1000
    schedule: str = "cosine"
    final_lr_ratio: float = 0.1
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    grad_clip_norm: float = 1.0
    # One optimiser update averages the gradients of `grad_accum_steps` micro-batches of the global batch.
    grad_accum_steps: int = 1
    # EMA of the parameters used for evaluation and export; its decay ramps up as min(ema_decay, (1+n)/(10+n)),
    # so short fine-tunes still move it.
    ema_decay: float = 0.9999
    # Regular expressions over '/'-joined parameter paths ("vision/.*" freezes the SigLIP tower).
    freeze: tuple[str, ...] = ()
    remat: bool = False
    # Run length and data.
    num_steps: int = 10_000
    batch_size: int = 32
    seed: int = 0
    # Mesh (data, fsdp, tensor); -1 takes the remaining devices. Parameters smaller than `fsdp_min_size`
    # elements stay replicated.
    mesh_shape: tuple[int, int, int] = (-1, 1, 1)
    fsdp_min_size: int = 2**14
    # Bookkeeping.
    save_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 0

    def __post_init__(self):
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        for name in ("num_steps", "batch_size", "grad_accum_steps", "save_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by grad_accum_steps {self.grad_accum_steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        object.__setattr__(self, "freeze", tuple(self.freeze))
        object.__setattr__(self, "mesh_shape", tuple(self.mesh_shape))

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
