"""The FLOP count behind MFU: matmul FLOPs of one training sample, from the config (no tracing).

A dense layer on T tokens costs 2*T*in*out forward; attention adds 2*T*S*width for the scores and as much for
the weighted sum. Per sample (N = image patches, C = context_len, H = action_horizon):
- vision: patch embedding 2*N*(p*p*3)*w, then per block 8*N*w^2 (q, k, v, out) + 4*N^2*w + 4*N*w*mlp
- mixer: per block 8*C*w^2 + 4*C^2*w + 4*C*w*(r*w)
- DiT (width h): time MLP 2*(256*h + h^2) and per block an AdaLN dense 4*h^2 (once per sample);
  per block q/out 4*H*h^2 + FFN 4*H*h*(r*h), then self-attention k/v 4*H*h^2 + 4*H^2*h
  or cross-attention k/v over the context 4*C*w*h + 4*H*C*h; head 4*h^2 + 2*H*h*d_out
- action encoder 2*H*(A*h + 2h*h + h*h), decoder 2*H*(d_out*h + h*A)
Training = forward + backward, backward = 2x forward for a trained part; a frozen part before every trained part
(a frozen vision tower) runs forward only; a frozen part after a trained one still back-propagates activations (2x).
Elementwise work (norms, softmax, GELU) is left out, as is rematerialisation (MFU counts useful FLOPs only).
"""

from __future__ import annotations

from nitrogen_jax.config import NitroGenConfig, TransformerConfig
from nitrogen_jax.model import TIME_EMBED_CHANNELS, is_cross_attention_block

# Dense bf16 peak FLOP/s per chip for MFU, by jax device_kind.
PEAK_BF16_FLOPS = {
    "NVIDIA H100 80GB HBM3": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5p": 459e12,
}


def _block(tokens: int, width: int, mlp: int, kv_tokens: int, kv_width: int) -> int:
    q_out = 4 * tokens * width * width
    kv = 4 * kv_tokens * kv_width * width
    attn = 4 * tokens * kv_tokens * width
    return q_out + kv + attn + 4 * tokens * width * mlp


def _stack(cfg: TransformerConfig, tokens: int) -> int:
    return cfg.num_layers * _block(tokens, cfg.width, cfg.mlp_ratio * cfg.width, tokens, cfg.width)


def forward_flops_per_sample(config: NitroGenConfig) -> dict[str, int]:
    """Forward matmul FLOPs of one sample, per part: vision, mixer, dit, action_encoder, action_decoder."""
    v, c = config.vision, config
    n, C, H, A = v.num_patches, c.context_len, c.action_horizon, c.action_dim
    vision = 2 * n * v.patch_size**2 * 3 * v.width + v.depth * _block(n, v.width, v.mlp_dim, n, v.width)
    mixer = _stack(c.mixer, C)
    d, h = c.dit, c.dit.width
    dit = 2 * (TIME_EMBED_CHANNELS * h + h * h) + 4 * h * h + 2 * H * h * c.dit_output_dim
    for i in range(d.num_layers):
        cross = is_cross_attention_block(i, c.interleave_self_attention)
        kv_tokens, kv_width = (C, c.mixer.width) if cross else (H, h)
        dit += 4 * h * h + _block(H, h, d.mlp_ratio * h, kv_tokens, kv_width)
    encoder = 2 * H * (A * h + 2 * h * h + h * h)
    decoder = 2 * H * (c.dit_output_dim * h + h * A)
    return {"vision": vision, "mixer": mixer, "dit": dit, "action_encoder": encoder, "action_decoder": decoder}


def train_flops_per_sample(config: NitroGenConfig, trained_parts: set[str] | None = None) -> int:
    """Forward + backward FLOPs of one sample; `trained_parts` None means everything is trained."""
    fwd = forward_flops_per_sample(config)

    def trained(part: str) -> bool:
        return trained_parts is None or part in trained_parts

    def cost(part: str, grad_flows_through: bool) -> int:
        return fwd[part] * (3 if trained(part) else 2 if grad_flows_through else 1)

    # vision -> mixer -> dit <- action_encoder; dit -> action_decoder. Activation gradients flow back through a
    # frozen part only when something before it is trained.
    total = cost("vision", False) + cost("mixer", trained("vision")) + cost("action_encoder", False)
    before_dit = trained("vision") or trained("mixer") or trained("action_encoder")
    total += cost("dit", before_dit) + cost("action_decoder", before_dit or trained("dit"))
    return total


def peak_flops(device) -> float | None:
    """Dense bf16 peak of one device, or None where unknown (CPU)."""
    kind = getattr(device, "device_kind", "")
    return PEAK_BF16_FLOPS.get(kind) or next((v for k, v in PEAK_BF16_FLOPS.items() if kind.startswith(k)), None)
