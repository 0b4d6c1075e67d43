"""SigLIP / SigLIP 2 FixRes vision towers in transformers' layout -> our `vision` params.

The release's `vision_encoder.*` tensors and a transformers `save_pretrained` directory share one layout, so one
key map serves both. The pooling `head.*` is dropped: the policy uses all patch tokens.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import jax
import numpy as np

from nitrogen_jax.config import NitroGenConfig, VisionConfig, get_config
from nitrogen_jax.convert.keymap import KeyMap, apply_key_map, attention, count_layers, layer_norm, linear
from nitrogen_jax.model import init_params

VISION_IGNORE = (r"(^|\.)head\.", r"position_ids$")


def vision_key_map(depth: int, prefix: str) -> KeyMap:
    p = f"{prefix}." if prefix else ""
    m: KeyMap = {
        "patch_embed/kernel": (f"{p}embeddings.patch_embedding.weight", "conv"),
        "patch_embed/bias": (f"{p}embeddings.patch_embedding.bias", "copy"),
        "pos_embed": (f"{p}embeddings.position_embedding.weight", "copy"),
        **layer_norm("post_ln", f"{p}post_layernorm"),
    }
    for i in range(depth):
        t = f"{p}encoder.layers.{i}"
        m.update(layer_norm(f"block_{i}/ln1", f"{t}.layer_norm1"))
        m.update(layer_norm(f"block_{i}/ln2", f"{t}.layer_norm2"))
        m.update(attention(f"block_{i}/attn", f"{t}.self_attn"))
        m.update(linear(f"block_{i}/mlp/fc1", f"{t}.mlp.fc1"))
        m.update(linear(f"block_{i}/mlp/fc2", f"{t}.mlp.fc2"))
    return m


def vision_config_from_tensors(tensors: dict, prefix: str, num_heads: int | None, eps: float = 1e-6) -> VisionConfig:
    """Read the tower's sizes off its tensor shapes; heads are not visible in shapes, so they come from the caller
    (a named variant or an override), else head dim 64 as in every public SigLIP."""
    p = f"{prefix}." if prefix else ""
    key = f"{p}embeddings.patch_embedding.weight"
    if key not in tensors:
        raise ValueError(f"no {key}: not a SigLIP vision tower in transformers' layout")
    w = np.asarray(tensors[key])
    if w.ndim != 4:
        raise ValueError(
            f"{key} has shape {w.shape}: only FixRes towers (Conv2d patch embedding) are supported, "
            "not SigLIP 2 NaFlex (Linear patch embedding)"
        )
    width, patch = w.shape[0], w.shape[-1]
    positions = np.asarray(tensors[f"{p}embeddings.position_embedding.weight"]).shape[0]
    side = math.isqrt(positions)
    if side * side != positions:
        raise ValueError(f"{positions} position embeddings do not form a square grid")
    depth = count_layers(tensors, f"{p}encoder.layers")
    mlp = np.asarray(tensors[f"{p}encoder.layers.0.mlp.fc1.weight"]).shape[0]
    heads = num_heads or max(1, width // 64)
    if width % heads:
        raise ValueError(f"vision width {width} is not divisible by {heads} heads")
    return VisionConfig(width, depth, heads, mlp, patch, side * patch, eps)


def load_siglip_vision(directory: str | os.PathLike, num_heads: int | None = None) -> tuple[VisionConfig, dict]:
    """A transformers `save_pretrained` directory (SiglipVisionModel or SiglipModel, safetensors) -> (config, params)."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {directory} (expected a transformers save_pretrained directory)")
    tensors: dict[str, np.ndarray] = {}
    for f in files:
        tensors.update(load_file(f))
    heads, eps = num_heads, 1e-6
    if (directory / "config.json").is_file():
        # transformers reads its own config (a SiglipConfig nests the tower's as vision_config; defaults filled in)
        from transformers import AutoConfig

        hf = AutoConfig.from_pretrained(directory)
        vision = getattr(hf, "vision_config", hf)
        heads, eps = num_heads or vision.num_attention_heads, vision.layer_norm_eps
    prefix = next(
        (p for p in ("vision_model", "") if f"{p + '.' if p else ''}embeddings.patch_embedding.weight" in tensors), None
    )
    if prefix is None:
        raise ValueError(
            f"{directory}: no embeddings.patch_embedding.weight (with or without 'vision_model.'): "
            "not a SigLIP vision tower"
        )
    tensors = {k: v for k, v in tensors.items() if k.startswith(prefix)}
    config = vision_config_from_tensors(tensors, prefix, heads, eps)
    from nitrogen_jax.vision import SiglipVisionTower

    target = jax.eval_shape(
        lambda r, x: SiglipVisionTower(config).init(r, x)["params"],
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), np.float32),
    )
    result = apply_key_map(
        vision_key_map(config.depth, prefix),
        tensors,
        target,
        source=str(directory),
        ignore=VISION_IGNORE + (r"^text_model\.", r"^logit_"),
    )
    return config, result.params


def init_from_siglip(
    config: str | NitroGenConfig, directory: str | os.PathLike, seed: int = 0, **overrides
) -> tuple[NitroGenConfig, dict]:
    """(config, params) of `config` with random weights except the vision tower, loaded from a SigLIP checkpoint.

    The preset's vision sizes must match the checkpoint's (heads come from the preset)."""
    cfg = get_config(config, **overrides)
    vision_cfg, vision_params = load_siglip_vision(directory, num_heads=cfg.vision.num_heads)
    if vision_cfg != cfg.vision:
        raise ValueError(f"{directory} holds a tower {vision_cfg}, but the config expects {cfg.vision}")
    params = dict(init_params(cfg, jax.random.key(seed)))
    params["vision"] = jax.tree.map(np.asarray, vision_params)
    return cfg, params
