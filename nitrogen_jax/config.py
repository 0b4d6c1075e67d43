"""Model configuration: frozen dataclasses, a SigLIP variant table and named presets.

A config fully describes the architecture and the flow-matching settings, round-trips through JSON (it is
saved beside every checkpoint) and is what `Policy.init` takes by name or as an object.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from nitrogen_jax.actions import get_layout


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """A SigLIP / SigLIP 2 FixRes ViT: patch conv, learned positions, pre-LN blocks, post-LN."""

    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_dim: int = 4096
    patch_size: int = 16
    image_size: int = 256
    layer_norm_eps: float = 1e-6

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


# (width, depth, heads, mlp) of the public SigLIP / SigLIP 2 towers, plus small sizes for tests.
SIGLIP_VARIANTS: dict[str, tuple[int, int, int, int]] = {
    "Ti": (32, 2, 2, 64),
    "S": (384, 12, 6, 1536),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "So400m": (1152, 27, 16, 4304),
}


def decode_variant(variant: str, image_size: int = 256) -> VisionConfig:
    """'L/16' -> VisionConfig of SigLIP large, patch 16, at `image_size`."""
    m = re.fullmatch(r"(\w+)/(\d+)", variant)
    if not m or m.group(1) not in SIGLIP_VARIANTS:
        raise ValueError(
            f"unknown SigLIP variant {variant!r}; expected NAME/PATCH with NAME in {sorted(SIGLIP_VARIANTS)}"
        )
    width, depth, heads, mlp = SIGLIP_VARIANTS[m.group(1)]
    return VisionConfig(width, depth, heads, mlp, int(m.group(2)), image_size)


def variant_from_hub_name(name: str) -> str | None:
    """'google/siglip2-large-patch16-256' -> 'L/16' (None when the name says nothing we know)."""
    sizes = {"base": "B", "large": "L", "so400m": "So400m", "small": "S"}
    m = re.search(r"siglip2?-(base|large|so400m|small)-patch(\d+)", name or "")
    return f"{sizes[m.group(1)]}/{m.group(2)}" if m else None


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """A stack of diffusers-style transformer blocks (the VL mixer or the DiT)."""

    num_layers: int = 4
    num_heads: int = 16
    head_dim: int = 64
    mlp_ratio: int = 4
    dropout: float = 0.0
    final_dropout: bool = False
    norm_eps: float = 1e-5
    sinusoidal_positions: bool = False
    max_positions: int = 512

    @property
    def width(self) -> int:
        return self.num_heads * self.head_dim


@dataclasses.dataclass(frozen=True)
class NitroGenConfig:
    """The whole policy: vision tower, VL mixer, DiT, action encoder/decoder and flow-matching settings.

    action_fps is the rate of the actions in a chunk (the release's 60 Hz, the seed's 30 Hz): data preprocessing
    resamples labels to it. action_shift is the number of action steps between a frame and the first action of its
    chunk in the data the policy was trained on (the release: 3); it changes no weights, but fine-tuning data should
    agree with it. hidden_size is the width of the action tokens (and must equal the DiT width); context_len is the tokenizer's
    max sequence length: image tokens are left-padded with zeros up to it, as in the release. global_context (not
    in the release; off in its presets) adds a linear map of all image tokens to the DiT's time embedding (see DiT).
    action_aux_weight (not in the release; needs global_context) adds a regression of the clean chunk from that same
    global vector to the loss, with this weight: a direct signal that teaches the tower what the actions depend on.
    action_aux_prior (needs it) starts the flow from noise around that head's chunk, in training and sampling, so
    the DiT models only what the head leaves over.
    """

    vision: VisionConfig = VisionConfig()
    mixer: TransformerConfig = TransformerConfig(num_layers=4)
    dit: TransformerConfig = TransformerConfig(num_layers=8, dropout=0.2)
    interleave_self_attention: bool = True
    global_context: bool = False
    action_aux_weight: float = 0.0
    action_aux_prior: bool = False
    action_layout: str = "release"
    action_horizon: int = 18
    action_fps: float = 60.0
    action_shift: int = 0
    hidden_size: int = 1024
    dit_output_dim: int = 1024
    max_seq_len: int = 1024
    add_pos_embed: bool = True
    context_len: int = 256
    num_steps: int = 16
    num_timestep_buckets: int = 1000
    noise_beta_alpha: float = 1.6
    noise_beta_beta: float = 0.8
    noise_s: float = 0.999
    compute_dtype: str = "float32"

    def __post_init__(self):
        get_layout(self.action_layout)
        if self.mixer.width != self.vision.width:
            raise ValueError(
                f"mixer width {self.mixer.width} must equal vision width {self.vision.width} (no projection between them)"
            )
        if self.hidden_size != self.dit.width:
            raise ValueError(
                f"hidden_size {self.hidden_size} must equal the DiT width {self.dit.width} (heads x head_dim)"
            )
        if self.context_len < self.vision.num_patches:
            raise ValueError(
                f"context_len {self.context_len} is shorter than the {self.vision.num_patches} image tokens"
            )
        if self.action_aux_weight < 0 or (self.action_aux_weight and not self.global_context):
            raise ValueError(
                f"action_aux_weight {self.action_aux_weight} must be >= 0, and > 0 only with global_context=True "
                "(the auxiliary head reads the global context vector)"
            )
        if self.action_aux_prior and not self.action_aux_weight:
            raise ValueError("action_aux_prior needs action_aux_weight > 0 (the auxiliary head it starts from)")
        if self.action_horizon > self.max_seq_len:
            raise ValueError(f"action_horizon {self.action_horizon} exceeds the position table ({self.max_seq_len})")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be 'float32' or 'bfloat16', got {self.compute_dtype!r}")

    @property
    def action_dim(self) -> int:
        return get_layout(self.action_layout).dim

    @property
    def layout(self):
        return get_layout(self.action_layout)

    def replace(self, **changes) -> NitroGenConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NitroGenConfig:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown NitroGenConfig fields {sorted(unknown)}")
        if "vision" in d:
            d["vision"] = VisionConfig(**d["vision"])
        for k in ("mixer", "dit"):
            if k in d:
                d[k] = TransformerConfig(**d[k])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> NitroGenConfig:
        return cls.from_dict(json.loads(text))


def _tiny() -> NitroGenConfig:
    return NitroGenConfig(
        vision=decode_variant("Ti/16"),
        mixer=TransformerConfig(num_layers=1, num_heads=2, head_dim=16),
        dit=TransformerConfig(num_layers=2, num_heads=2, head_dim=16, dropout=0.2),
        hidden_size=32,
        dit_output_dim=32,
        max_seq_len=64,
        num_steps=4,
    )


PRESETS: dict[str, NitroGenConfig] = {
    # The public release: SigLIP 2 L/16 at 256, 4-block mixer, 8-block DiT, 25-dim actions, chunk 18, 16 steps.
    "nitrogen-500m": NitroGenConfig(),
    # Same trunk, the seed description's 20-dim layout and 16-frame chunks.
    "seed": NitroGenConfig(action_layout="seed", action_horizon=16, action_fps=30.0),
    # A few hundred thousand parameters for CPU tests.
    "tiny": _tiny(),
}


def get_config(name_or_config: str | NitroGenConfig, **overrides) -> NitroGenConfig:
    if isinstance(name_or_config, NitroGenConfig):
        cfg = name_or_config
    else:
        try:
            cfg = PRESETS[name_or_config]
        except KeyError:
            raise ValueError(f"unknown preset {name_or_config!r}; expected one of {sorted(PRESETS)}") from None
    return cfg.replace(**overrides) if overrides else cfg
