"""The end-to-end run's settings, one frozen dataclass per stage, sized to finish on 2 CPU cores in 15 minutes.

Each stage fingerprints its own settings (and its inputs' fingerprints), so changing, say, the training steps
re-runs train, evaluate and report but not record, extract or preprocess.
"""

from __future__ import annotations

import dataclasses

from nitrogen_jax.config import NitroGenConfig, TransformerConfig, VisionConfig
from nitrogen_jax.data.preprocess import PreprocessConfig
from nitrogen_jax.e2e.record import RecordSettings
from nitrogen_jax.train.config import TrainConfig

ACTION_HORIZON = 8  # 8 frames at 60 Hz: the policy re-plans every `execute` of them


IMAGE_SIZE = 128  # frames are written and read at this size (the preprocess stage's image_size)


def e2e_model() -> NitroGenConfig:
    """Between the tiny preset (0.11 M) and the seed: a 64-wide ViT on 16-pixel patches of a 128-pixel frame, one
    mixer block, a 2-block DiT. context_len is the 64 image tokens: padding them with zeros to the release's 256
    made training 3.3x slower, and 256-pixel frames (256 tokens) 7x slower, for the same (chance-level) frame
    reading at equal steps (bench/frame_reading.py). global_context gives the DiT a linear view of all the tokens:
    through cross-attention alone it never learned to compare the ball's column with the paddle's; the auxiliary
    clean-chunk loss on that view (action_aux_weight) teaches the tower faster, and the flow starts from its chunk
    (action_aux_prior) so a sampled action follows what the head read (bench/relational_probe.py, docs/e2e.md)."""
    vision = VisionConfig(width=64, depth=2, num_heads=4, mlp_dim=128, patch_size=16, image_size=IMAGE_SIZE)
    return NitroGenConfig(
        vision=vision,
        context_len=vision.num_patches,
        mixer=TransformerConfig(num_layers=1, num_heads=4, head_dim=16),
        dit=TransformerConfig(num_layers=2, num_heads=4, head_dim=16, dropout=0.0),
        global_context=True,
        action_aux_weight=20.0,
        action_aux_prior=True,
        action_layout="seed",
        action_horizon=ACTION_HORIZON,
        action_fps=60.0,
        hidden_size=64,
        dit_output_dim=64,
        max_seq_len=64,
        num_steps=8,
    )


@dataclasses.dataclass(frozen=True)
class ExtractSettings:
    method: str = "auto"
    """'overlay' (data.overlay.extract, from the video alone), 'truth' (the withheld labels, for testing the rest),
    or 'auto' (overlay when the extractor is installed, else truth, said so in the report)."""
    workers: int = 1
    """Extraction worker processes."""
    parser: str | None = None
    """Overlay parser weights folder (default: the weights shipped in data/overlay/weights)."""


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    tasks: str = "boxing_land_10"
    """Tasks to evaluate (sim_bridge.tasks): ones whose right action depends on the frame."""
    rollouts: int = 30
    """Rollouts per task and agent."""
    execute: int = 4
    """Actions of each predicted chunk executed before predicting again."""
    temperature: float = 1.0
    """Scale of the sampler's initial noise."""
    gif_frames: int = 360
    """Game frames in the report's GIF of the policy playing."""


@dataclasses.dataclass(frozen=True)
class E2ESettings:
    record: RecordSettings = RecordSettings()
    extract: ExtractSettings = ExtractSettings()
    preprocess: PreprocessConfig = PreprocessConfig(
        layout="seed",
        action_horizon=ACTION_HORIZON,
        action_fps=60.0,
        frame_stride=1,
        density_threshold=0.0,
        image_size=IMAGE_SIZE,
    )
    model: NitroGenConfig = dataclasses.field(default_factory=e2e_model)
    train: TrainConfig = TrainConfig(
        learning_rate=2e-3, warmup_steps=100, num_steps=15000, batch_size=16, ema_decay=0.999, save_every=2000
    )
    augment: bool = False
    """Loader augmentations (off: positions on screen are what the policy must read)."""
    eval: EvalSettings = EvalSettings()
