"""An independent PyTorch rendering of the release's architecture, for parity tests.

Written from the facts in shared/reference/official-nitrogen.md (not from the release's code): module names are
chosen so that `state_dict()` has exactly the release's keys, the vision tower is transformers' own
`SiglipVisionModel`, and the maths follows the documented conventions (AdaLN scale-then-shift, output head
shift-then-scale, [cos, sin] time features for the DiT, [sin, cos] for the action encoder, left zero padding of
the image tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoid(t: torch.Tensor, dim: int, denominator: int, cos_first: bool) -> torch.Tensor:
    freq = torch.exp(-math.log(1e4) * torch.arange(dim // 2, dtype=torch.float32) / denominator)
    arg = t.float()[..., None] * freq
    return torch.cat([arg.cos(), arg.sin()] if cos_first else [arg.sin(), arg.cos()], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, inner = heads, heads * head_dim
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, inner) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x, context=None):
        context = x if context is None else context
        split = lambda y: y.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context)))
        return self.to_out[0](y.transpose(1, 2).flatten(2))


class GeluProj(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x):
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.net = nn.ModuleList([GeluProj(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x):
        for layer in self.net:
            x = layer(x)
        return x


class AdaNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps, elementwise_affine=False)

    def forward(self, x, temb):
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, ada: bool, eps: float = 1e-5):
        super().__init__()
        self.ada = ada
        self.norm1 = AdaNorm(dim, eps) if ada else nn.LayerNorm(dim, eps)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim, eps, elementwise_affine=not ada)
        self.ff = FeedForward(dim, 4 * dim)

    def forward(self, x, temb=None, context=None):
        h = self.norm1(x, temb) if self.ada else self.norm1(x)
        x = x + self.attn1(h, context)
        return x + self.ff(self.norm3(x))


class Mixer(nn.Module):
    def __init__(self, dim, heads, head_dim, layers):
        super().__init__()
        self.transformer_blocks = nn.ModuleList([Block(dim, heads, head_dim, ada=False) for _ in range(layers)])

    def forward(self, x):
        for b in self.transformer_blocks:
            x = b(x)
        return x


class TimestepEmbedder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(256, dim), nn.Linear(dim, dim)

    def forward(self, bucket):
        return self.linear_2(F.silu(self.linear_1(sinusoid(bucket, 256, 127, cos_first=True))))


class TimestepEncoder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.timestep_embedder = TimestepEmbedder(dim)


class DiT(nn.Module):
    def __init__(self, dim, heads, head_dim, layers):
        super().__init__()
        self.timestep_encoder = TimestepEncoder(dim)
        self.transformer_blocks = nn.ModuleList([Block(dim, heads, head_dim, ada=True) for _ in range(layers)])
        self.norm_out = nn.LayerNorm(dim, 1e-6, elementwise_affine=False)
        self.proj_out_1, self.proj_out_2 = nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, x, bucket, context):
        temb = self.timestep_encoder.timestep_embedder(bucket)
        for i, b in enumerate(self.transformer_blocks):
            x = b(x, temb, context if i % 2 == 0 else None)
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)
        return self.proj_out_2(self.norm_out(x) * (1 + scale[:, None]) + shift[:, None])


class CategoryLinear(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.W = nn.Parameter(0.02 * torch.randn(1, n_in, n_out))
        self.b = nn.Parameter(0.02 * torch.randn(1, n_out))

    def forward(self, x):
        return x @ self.W[0] + self.b[0]


class ActionEncoder(nn.Module):
    def __init__(self, action_dim, hidden):
        super().__init__()
        self.hidden = hidden
        self.W1, self.W2, self.W3 = (
            CategoryLinear(action_dim, hidden),
            CategoryLinear(2 * hidden, hidden),
            CategoryLinear(hidden, hidden),
        )

    def forward(self, actions, bucket):
        a = self.W1(actions)
        tau = sinusoid(bucket, self.hidden, self.hidden // 2, cos_first=False)[:, None].expand_as(a)
        return self.W3(F.silu(self.W2(torch.cat([a, tau], dim=-1))))


class ActionDecoder(nn.Module):
    def __init__(self, hidden, action_dim):
        super().__init__()
        self.layer1, self.layer2 = CategoryLinear(hidden, hidden), CategoryLinear(hidden, action_dim)

    def forward(self, x):
        return self.layer2(F.relu(self.layer1(x)))


class ReleaseReference(nn.Module):
    """The release's module tree. `siglip_config` is a transformers SiglipVisionConfig."""

    def __init__(
        self,
        siglip_config,
        *,
        heads: int,
        head_dim: int,
        mixer_layers: int,
        dit_layers: int,
        action_dim: int,
        max_seq_len: int,
        context_len: int,
    ):
        super().__init__()
        from transformers import SiglipVisionModel

        dim = heads * head_dim
        self.context_len = context_len
        self.vision_encoder = SiglipVisionModel(siglip_config)
        self.vl_self_attention_model = Mixer(dim, heads, head_dim, mixer_layers)
        self.model = DiT(dim, heads, head_dim, dit_layers)
        self.action_encoder = ActionEncoder(action_dim, dim)
        self.action_decoder = ActionDecoder(dim, action_dim)
        self.position_embedding = nn.Embedding(max_seq_len, dim)

    def encode(self, frames_uint8: torch.Tensor) -> torch.Tensor:
        pixels = (frames_uint8.float() / 255.0 - 0.5) / 0.5
        tokens = self.vision_encoder(pixel_values=pixels.permute(0, 3, 1, 2)).last_hidden_state
        pad = self.context_len - tokens.shape[1]
        tokens = torch.cat([tokens.new_zeros(tokens.shape[0], pad, tokens.shape[2]), tokens], dim=1)
        return self.vl_self_attention_model(tokens)

    def velocity(self, context, actions, bucket):
        x = self.action_encoder(actions, bucket)
        x = x + self.position_embedding.weight[: x.shape[1]]
        return self.action_decoder(self.model(x, bucket, context))

    def sample(self, frames_uint8, noise, num_steps):
        x = noise
        for k in range(num_steps):
            bucket = torch.full((x.shape[0],), int(k / num_steps * 1000))
            x = x + self.velocity(self.encode(frames_uint8), x, bucket) / num_steps  # recomputed, as the release does
        return x
