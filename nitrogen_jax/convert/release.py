"""Import the public release's checkpoint (`ng.pt`) or any smaller checkpoint of its family.

The architecture comes from the file: `ckpt_config.model_cfg` for what shapes cannot tell (heads, dropout, flow
settings) and the tensor shapes for sizes, so nothing assumes the 500M numbers. Every tensor is mapped or
accounted for: the unused pooling head and fixed sinusoidal buffers are reported as dropped, anything else that
does not fit fails with the full list.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from nitrogen_jax.actions import layout_for_dim
from nitrogen_jax.config import NitroGenConfig, TransformerConfig, decode_variant, variant_from_hub_name
from nitrogen_jax.convert.keymap import KeyMap, apply_key_map, attention, count_layers, layer_norm, linear
from nitrogen_jax.convert.siglip import VISION_IGNORE, vision_config_from_tensors, vision_key_map
from nitrogen_jax.convert.torch_pickle import load_torch_checkpoint, to_plain
from nitrogen_jax.model import abstract_params

# The release code's default tokenizer length, used when the checkpoint's tokenizer_cfg does not say.
RELEASE_DEFAULT_CONTEXT_LEN = 300
DIFFUSERS_ATTN = ("to_q", "to_k", "to_v", "to_out.0")
DROPPED = VISION_IGNORE + (r"\.pos_embed\.pe$",)


@dataclasses.dataclass
class ConversionReport:
    source: str
    config: NitroGenConfig
    num_tensors: int
    mapped: int
    dropped: list[str]
    stand_ins: list[str]
    notes: list[str]

    def summary(self) -> str:
        lines = [f"{self.source}: mapped {self.mapped} of {self.num_tensors} tensors, dropped {len(self.dropped)}"]
        if self.dropped:
            heads = sorted({k.split(".head.")[0] + ".head.*" if ".head." in k else k for k in self.dropped})
            lines.append("  dropped (unused by the policy): " + ", ".join(heads))
        if self.stand_ins:
            lines.append("  globals in the file read as inert data (never executed): " + ", ".join(self.stand_ins))
        lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)


def _block_config(cfg: dict, num_layers: int, width_from_weights: int, ff_dim: int, what: str) -> TransformerConfig:
    heads = int(cfg.get("num_attention_heads", 16))
    head_dim = int(cfg.get("attention_head_dim", width_from_weights // heads))
    if heads * head_dim != width_from_weights:
        raise ValueError(
            f"{what}: config says {heads} heads x {head_dim} = {heads * head_dim} wide, "
            f"but its weights are {width_from_weights} wide"
        )
    if ff_dim % width_from_weights:
        raise ValueError(f"{what}: FFN width {ff_dim} is not a multiple of the block width {width_from_weights}")
    return TransformerConfig(
        num_layers=num_layers,
        num_heads=heads,
        head_dim=head_dim,
        mlp_ratio=ff_dim // width_from_weights,
        dropout=float(cfg.get("dropout", 0.0)),
        final_dropout=bool(cfg.get("final_dropout", False)),
        norm_eps=float(cfg.get("norm_eps", 1e-5)),
        sinusoidal_positions=cfg.get("positional_embeddings") == "sinusoidal",
        max_positions=int(cfg.get("max_num_positional_embeddings", 512) or 512),
    )


def config_from_release(
    tensors: dict[str, Any],
    ckpt_config: dict,
    *,
    vision_heads: int | None = None,
    context_len: int | None = None,
    compute_dtype: str = "float32",
) -> tuple[NitroGenConfig, list[str]]:
    """The NitroGenConfig of a release-family checkpoint, and notes on where each guessed value came from."""
    notes = []
    model_cfg = ckpt_config.get("model_cfg") or {}
    shape = lambda k: tuple(np.asarray(tensors[k]).shape)  # noqa: E731
    for required in (
        "action_encoder.W1.W",
        "model.proj_out_2.weight",
        "vl_self_attention_model.transformer_blocks.0.attn1.to_q.weight",
    ):
        if required not in tensors:
            raise ValueError(f"checkpoint has no {required}: not a NitroGen release-family state dict")

    if vision_heads is None:
        variant = variant_from_hub_name(str(model_cfg.get("vision_encoder_name", "")))
        if variant:
            vision_heads = decode_variant(variant).num_heads
            width = shape("vision_encoder.embeddings.patch_embedding.weight")[0]
            if decode_variant(variant).width != width:
                vision_heads = None
                notes.append(
                    f"vision_encoder_name {model_cfg.get('vision_encoder_name')!r} does not match width {width}"
                )
            else:
                notes.append(
                    f"vision heads {vision_heads} from vision_encoder_name {model_cfg.get('vision_encoder_name')!r}"
                )
    vision = vision_config_from_tensors(tensors, "vision_encoder", vision_heads)
    if vision_heads is None:
        notes.append(
            f"vision heads {vision.num_heads}: head dim 64 (no known variant named; override with --vision-heads)"
        )

    mixer_prefix, dit_prefix = "vl_self_attention_model.transformer_blocks", "model.transformer_blocks"
    mixer = _block_config(
        model_cfg.get("vl_self_attention_cfg") or {},
        count_layers(tensors, mixer_prefix),
        shape(f"{mixer_prefix}.0.attn1.to_q.weight")[0],
        shape(f"{mixer_prefix}.0.ff.net.0.proj.weight")[0],
        "vl_self_attention_cfg",
    )
    dit_cfg = model_cfg.get("diffusion_model_cfg") or {}
    dit = _block_config(
        dit_cfg,
        count_layers(tensors, dit_prefix),
        shape(f"{dit_prefix}.0.attn1.to_q.weight")[0],
        shape(f"{dit_prefix}.0.ff.net.0.proj.weight")[0],
        "diffusion_model_cfg",
    )

    _, action_dim, hidden = shape("action_encoder.W1.W")
    modality_cfg = ckpt_config.get("modality_cfg") or {}
    action_shift = int(modality_cfg.get("action_shift", 0))
    if "action_shift" not in modality_cfg:
        notes.append("modality_cfg has no action_shift: recording 0 (the release's is 3)")
    tokenizer_cfg = ckpt_config.get("tokenizer_cfg") or {}
    if context_len is None:
        context_len = tokenizer_cfg.get("max_sequence_length")
        if context_len is None:
            context_len = RELEASE_DEFAULT_CONTEXT_LEN
            notes.append(f"tokenizer_cfg has no max_sequence_length: using the release code's default {context_len}")
    context_len = int(context_len)
    if context_len > vision.num_patches:
        notes.append(
            f"image tokens are left-padded with {context_len - vision.num_patches} zero vectors (context_len {context_len})"
        )

    config = NitroGenConfig(
        vision=vision,
        mixer=mixer,
        dit=dit,
        interleave_self_attention=bool(dit_cfg.get("interleave_self_attention", True)),
        action_layout=layout_for_dim(action_dim).name,
        action_horizon=int(model_cfg.get("action_horizon", 18)),
        action_shift=action_shift,
        hidden_size=hidden,
        dit_output_dim=shape("model.proj_out_2.weight")[0],
        max_seq_len=shape("position_embedding.weight")[0],
        add_pos_embed=bool(model_cfg.get("add_pos_embed", True)),
        context_len=context_len,
        num_steps=int(model_cfg.get("num_inference_timesteps", 16)),
        num_timestep_buckets=int(model_cfg.get("num_timestep_buckets", 1000)),
        noise_beta_alpha=float(model_cfg.get("noise_beta_alpha", 1.5)),
        noise_beta_beta=float(model_cfg.get("noise_beta_beta", 1.0)),
        noise_s=float(model_cfg.get("noise_s", 0.999)),
        compute_dtype=compute_dtype,
    )
    return config, notes


def release_key_map(config: NitroGenConfig) -> KeyMap:
    """Our flat param paths -> the release's state-dict keys."""
    m: KeyMap = {f"vision/{k}": v for k, v in vision_key_map(config.vision.depth, "vision_encoder").items()}
    for stack, prefix, n in (
        ("mixer", "vl_self_attention_model.transformer_blocks", config.mixer.num_layers),
        ("dit", "model.transformer_blocks", config.dit.num_layers),
    ):
        for i in range(n):
            ours, theirs = f"{stack}/block_{i}", f"{prefix}.{i}"
            m.update(attention(f"{ours}/attn", f"{theirs}.attn1", DIFFUSERS_ATTN))
            m.update(linear(f"{ours}/ff/fc1", f"{theirs}.ff.net.0.proj"))
            m.update(linear(f"{ours}/ff/fc2", f"{theirs}.ff.net.2"))
            if stack == "mixer":
                m.update(layer_norm(f"{ours}/norm1", f"{theirs}.norm1"))
                m.update(layer_norm(f"{ours}/norm3", f"{theirs}.norm3"))
            else:
                m.update(linear(f"{ours}/norm1_linear", f"{theirs}.norm1.linear"))
    m.update(linear("dit/time_linear_1", "model.timestep_encoder.timestep_embedder.linear_1"))
    m.update(linear("dit/time_linear_2", "model.timestep_encoder.timestep_embedder.linear_2"))
    m.update(linear("dit/proj_out_1", "model.proj_out_1"))
    m.update(linear("dit/proj_out_2", "model.proj_out_2"))
    for name in ("W1", "W2", "W3"):
        m[f"action_encoder/{name}/kernel"] = (f"action_encoder.{name}.W", "embodiment")
        m[f"action_encoder/{name}/bias"] = (f"action_encoder.{name}.b", "embodiment")
    for name in ("layer1", "layer2"):
        m[f"action_decoder/{name}/kernel"] = (f"action_decoder.{name}.W", "embodiment")
        m[f"action_decoder/{name}/bias"] = (f"action_decoder.{name}.b", "embodiment")
    m["action_pos_embed"] = ("position_embedding.weight", "copy")
    return m


def convert_release_state(
    tensors: dict[str, Any],
    ckpt_config: dict,
    *,
    source: str = "checkpoint",
    vision_heads: int | None = None,
    context_len: int | None = None,
    compute_dtype: str = "float32",
) -> tuple[NitroGenConfig, dict, ConversionReport]:
    """A release-family state dict (numpy or torch tensors) + its ckpt_config -> (config, params, report)."""
    tensors = {k: (v.float().numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in tensors.items()}
    config, notes = config_from_release(
        tensors, ckpt_config, vision_heads=vision_heads, context_len=context_len, compute_dtype=compute_dtype
    )
    for k, v in tensors.items():
        if k.endswith(".W") and k.startswith(("action_encoder.", "action_decoder.")) and v.shape[0] != 1:
            notes.append(f"{k} holds {v.shape[0]} embodiments: using embodiment 0")
    result = apply_key_map(release_key_map(config), tensors, abstract_params(config), source=source, ignore=DROPPED)
    report = ConversionReport(source, config, len(tensors), len(result.used), result.ignored, [], notes)
    return config, jax.tree.map(np.asarray, result.params), report


def load_release_checkpoint(path: str | os.PathLike, **options) -> tuple[NitroGenConfig, dict, ConversionReport]:
    """Read `ng.pt` safely (see torch_pickle) and convert it. options: vision_heads, context_len, compute_dtype."""
    obj, stand_ins = load_torch_checkpoint(path)
    if not isinstance(obj, dict) or "model" not in obj:
        raise ValueError(
            f"{path}: expected a dict with 'model' (state dict) and 'ckpt_config', got "
            f"{type(obj).__name__} with keys {sorted(obj)[:10] if isinstance(obj, dict) else '-'}"
        )
    ckpt_config = to_plain(obj.get("ckpt_config") or {})
    if not isinstance(ckpt_config, dict):
        raise ValueError(f"{path}: ckpt_config is {type(ckpt_config).__name__}, expected a dict")
    options = {k: v for k, v in options.items() if v is not None}
    config, params, report = convert_release_state(
        to_plain_tensors(obj["model"]), ckpt_config, source=os.fspath(path), **options
    )
    report.stand_ins = stand_ins
    return config, params, report


def to_plain_tensors(state_dict) -> dict[str, Any]:
    if not isinstance(state_dict, dict):
        raise ValueError(f"checkpoint 'model' is {type(state_dict).__name__}, expected a state dict of tensors")
    return dict(state_dict)
