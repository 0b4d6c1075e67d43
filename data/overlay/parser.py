"""Stage 2 of overlay extraction: a small SegFormer-like network that reads a rectified overlay crop.

Input: the previous and the current video frame, each already warped into the style's template frame and resized to
`PARSER_INPUT_HW` (`rectify`), plus the style's neutral template at the same size. Seeing the template lets the
network read "difference from neutral", which is what carries over to a style it never trained on.

Network (Flax Linen, like the rest of the model code): a hierarchical encoder of overlapping patch embeddings
(strided convolutions) and transformer blocks with spatial-reduction attention and Mix-FFN (a depthwise 3x3 conv
between the two dense layers instead of position embeddings); an all-MLP decoder that brings every stage to the
first stage's resolution and fuses them, with an absolute position embedding (alike buttons differ only by where they
sit). An MLP reads the flattened, narrowed fused map: a logit per button, an 11x11 grid of logits per stick
(position = expectation over the cell centres in [-1, 1]) and a value per trigger. (Per-element attention pooling
was tried first: it sat on a plateau for ~100 steps even on a single batch; the flat read-out learns at once.)
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, cast

import cv2
import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from nitrogen_jax.actions import STANDARD_BUTTONS
from nitrogen_jax.data.overlay.styles import (
    FAMILIES,
    LAYOUTS,
    STICK_CAP,
    STICK_ELEMENT,
    STICK_TRAVEL,
    canonical_size,
    element_boxes,
)
from nitrogen_jax.model import normalize_frames

# Rectified crops are resized to this (height, width) before parsing: large enough that a stick cap's full deflection
# spans several pixels at the smallest family layout, small enough for >= 60 frames/s on 2 CPU cores.
PARSER_INPUT_HW: tuple[int, int] = (96, 160)
STICK_GRID = 11  # cells per axis of a stick's position grid
# The decoder's map (a quarter of the input per side), where training also asks "what differs from neutral here?".
CHANGE_MAP_HW: tuple[int, int] = (PARSER_INPUT_HW[0] // 4, PARSER_INPUT_HW[1] // 4)
NUM_BUTTONS = len(STANDARD_BUTTONS)
NUM_STICKS = 2
NUM_TRIGGERS = 2
NUM_ELEMENTS = NUM_BUTTONS + NUM_STICKS + NUM_TRIGGERS
THUMB_INDICES = tuple(STANDARD_BUTTONS.index(b) for b in STICK_ELEMENT)  # left_thumb, right_thumb
WEIGHTS_DIR = Path(__file__).parent / "weights"
PARAMS_FILE, CONFIG_FILE = "parser_params.msgpack", "parser_config.json"
STORED_DTYPE = np.float16


def grid_centres(n: int = STICK_GRID) -> np.ndarray:
    """The n cell centres of a grid over [-1, 1] (the end cells are centred on -1 and 1, so full deflection is
    reachable by a confident prediction)."""
    return np.linspace(-1.0, 1.0, n, dtype=np.float32)


def grid_expectation(logits: jax.Array) -> jax.Array:
    """[..., G, G] logits (rows = y, columns = x) -> [..., 2] expected (x, y) over the cell centres."""
    g = logits.shape[-1]
    p = jax.nn.softmax(logits.reshape(*logits.shape[:-2], g * g), axis=-1).reshape(logits.shape)
    c = jnp.asarray(grid_centres(g))
    return jnp.stack([(p.sum(-2) * c).sum(-1), (p.sum(-1) * c).sum(-1)], axis=-1)


@dataclasses.dataclass(frozen=True)
class ParserConfig:
    """The network's sizes; saved as JSON beside the weights."""

    dims: tuple[int, ...] = (24, 48, 96)
    depths: tuple[int, ...] = (1, 1, 2)
    heads: tuple[int, ...] = (1, 2, 4)
    sr_ratios: tuple[int, ...] = (4, 2, 1)  # spatial reduction of keys/values per stage
    mlp_ratios: tuple[int, ...] = (4, 4, 2)
    decoder_dim: int = 48
    roi_grid: int = 6  # each element's box is sampled on roi_grid x roi_grid points
    roi_channels: int = 16  # channels of the fused map the ROIs sample
    head_dim: int = 128  # the read-out MLP's width
    input_hw: tuple[int, int] = PARSER_INPUT_HW
    cap_click: bool = True
    """read the stick clicks (left_thumb, right_thumb) where the cap is (`CapClickReadout`) instead of from the
    whole stick box like any button, which missed most clicks at full deflection (docs/overlay-parser.md)"""

    def __post_init__(self):
        n = len(self.dims)
        for name in ("depths", "heads", "sr_ratios", "mlp_ratios"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if len(getattr(self, name)) != n:
                raise ValueError(f"ParserConfig.{name} needs one entry per stage ({n}), got {getattr(self, name)}")
        object.__setattr__(self, "dims", tuple(self.dims))
        object.__setattr__(self, "input_hw", tuple(self.input_hw))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParserConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown ParserConfig fields {sorted(set(d) - known)}")
        return cls(**{"cap_click": False, **d})  # saved before the option existed: the clicks come from the box


def coordinate_channels(b: int, h: int, w: int) -> jax.Array:
    """[b, h, w, 2] pixel (x, y) in [-1, 1] (CoordConv): the stem knows where in the template frame it looks."""
    ys, xs = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing="ij")
    return jnp.broadcast_to(jnp.stack([xs, ys], -1), (b, h, w, 2))


def fourier_positions(h: int, w: int, octaves: int = 4) -> jax.Array:
    """[h, w, 2 + 4 * octaves]: (x, y) in [-1, 1] and their sines/cosines at pi * 2^k, for a position embedding
    that resolves single elements."""
    xy = coordinate_channels(1, h, w)[0]
    freqs = jnp.pi * 2.0 ** jnp.arange(octaves)
    angles = (xy[..., None] * freqs).reshape(h, w, -1)
    return jnp.concatenate([xy, jnp.sin(angles), jnp.cos(angles)], -1)


class OverlapPatchEmbed(nn.Module):
    """A strided conv whose kernel is larger than its stride, so neighbouring patches overlap; then LayerNorm."""

    dim: int
    kernel: int
    stride: int

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.dim, (self.kernel, self.kernel), (self.stride, self.stride), padding=self.kernel // 2)(x)
        return nn.LayerNorm()(x)


class SpatialReductionAttention(nn.Module):
    """Attention whose keys/values come from a map shrunk `sr` times per side by a strided conv: the cost of
    SegFormer's efficient attention, quadratic in tokens / sr^2 instead of tokens."""

    dim: int
    heads: int
    sr: int

    @nn.compact
    def __call__(self, x):  # [B, H, W, C]
        b, h, w, c = x.shape
        kv = x
        if self.sr > 1:
            kv = nn.Conv(self.dim, (self.sr, self.sr), (self.sr, self.sr), name="reduce")(x)
            kv = nn.LayerNorm(name="reduce_norm")(kv)
        q, kv = x.reshape(b, h * w, c), kv.reshape(b, -1, c)
        out = nn.MultiHeadDotProductAttention(self.heads, qkv_features=self.dim, out_features=self.dim)(q, kv)
        return out.reshape(b, h, w, self.dim)


class DepthwiseConv3x3(nn.Module):
    """A per-channel 3x3 conv ('same' padding) as nine shifted multiply-adds: XLA's CPU backend runs grouped
    convolutions (feature_group_count) about 6x slower than this."""

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2), (3, 3, x.shape[-1]))
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
        h, w = x.shape[1:3]
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return sum(xp[:, i : i + h, j : j + w] * kernel[i, j] for i in range(3) for j in range(3)) + bias


class MixFFN(nn.Module):
    """Dense -> depthwise 3x3 conv -> GELU -> Dense: the conv leaks enough position that no position embedding is
    needed."""

    dim: int
    ratio: int

    @nn.compact
    def __call__(self, x):
        hidden = self.dim * self.ratio
        x = nn.Dense(hidden)(x)
        x = DepthwiseConv3x3(name="depthwise")(x)
        return nn.Dense(self.dim)(nn.gelu(x))


class EncoderBlock(nn.Module):
    dim: int
    heads: int
    sr: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, x):
        x = x + SpatialReductionAttention(self.dim, self.heads, self.sr)(nn.LayerNorm()(x))
        return x + MixFFN(self.dim, self.mlp_ratio)(nn.LayerNorm()(x))


class OverlayParserNet(nn.Module):
    """(prev, cur, template) uint8 [B, H, W, 3] -> {"buttons": [B, 17] logits, "sticks": [B, 2, G, G] logits,
    "triggers": [B, 2] logits, "changed": [B, H/4, W/4] logits of "this cell differs from the neutral render"
    (a dense training signal only)}."""

    config: ParserConfig

    @nn.compact
    def __call__(self, prev, cur, template, family=None):
        """`family` (int [B], training only): place the ROIs by the true family instead of the predicted one, so
        the read-out learns from the first step while the family head is still guessing."""
        c = self.config
        cur_f, prev_f, tmpl_f = normalize_frames(cur), normalize_frames(prev), normalize_frames(template)
        x = jnp.concatenate(
            [cur_f, prev_f, tmpl_f, cur_f - tmpl_f, coordinate_channels(cur.shape[0], *cur.shape[1:3])], axis=-1
        )

        features = []
        for i, dim in enumerate(c.dims):
            kernel, stride = (7, 4) if i == 0 else (3, 2)
            x = OverlapPatchEmbed(dim, kernel, stride, name=f"patch_embed_{i}")(x)
            for j in range(c.depths[i]):
                x = EncoderBlock(dim, c.heads[i], c.sr_ratios[i], c.mlp_ratios[i], name=f"stage_{i}_block_{j}")(x)
            x = nn.LayerNorm(name=f"stage_{i}_norm")(x)
            features.append(x)

        # All-MLP decoder: every stage to decoder_dim, up to the first stage's resolution, concatenated and fused.
        b, h, w, _ = features[0].shape
        ups = [
            jax.image.resize(nn.Dense(c.decoder_dim, name=f"decoder_proj_{i}")(f), (b, h, w, c.decoder_dim), "bilinear")
            for i, f in enumerate(features)
        ]
        fused = nn.Dense(c.decoder_dim, name="decoder_fuse")(jnp.concatenate(ups, axis=-1))
        # Buttons that look alike (four face circles) differ only by where they sit in the template frame: give the
        # decoder absolute position (the encoder's only position signal is conv padding).
        fused = fused + nn.Dense(c.decoder_dim, name="decoder_position")(fourier_positions(h, w))
        fused = nn.gelu(nn.LayerNorm(name="decoder_norm")(fused))

        # Which family (from the whole input, template included): picks where each element sits.
        context = nn.Dense(c.head_dim, name="context")(features[-1].mean(axis=(1, 2)))
        family_logits = nn.Dense(len(FAMILIES), name="family_head")(nn.gelu(context))
        family_p = jax.nn.softmax(family_logits) if family is None else jax.nn.one_hot(family, len(FAMILIES))

        # ROI read-out: each element's box in every family's layout, sampled on an R x R grid of the (narrowed)
        # fused map, mixed by the family probabilities; a shared MLP (plus an element embedding) reads each ROI.
        narrow = nn.Dense(c.roi_channels, name="roi_proj")(fused).reshape(b, h * w, c.roi_channels)
        idx, wts = roi_sampling(c.roi_grid, (h, w))  # [F, K*R*R, 4]
        rois = jnp.einsum("bfrjd,frj,bf->brd", narrow[:, idx], jnp.asarray(wts), family_p)
        rois = rois.reshape(b, NUM_ELEMENTS, -1)
        embed = self.param("element_embed", nn.initializers.normal(0.02), (NUM_ELEMENTS, c.head_dim))
        hidden = (
            nn.Dense(c.head_dim, name="roi_in")(rois) + embed + nn.Dense(c.head_dim, name="roi_ctx")(context)[:, None]
        )
        hidden = nn.gelu(nn.LayerNorm(name="roi_norm")(nn.gelu(hidden)))
        hidden = nn.gelu(nn.Dense(c.head_dim, name="roi_mlp")(hidden))
        btn, stk, trg = jnp.split(hidden, [NUM_BUTTONS, NUM_BUTTONS + NUM_STICKS], axis=1)
        buttons = ElementwiseDense(NUM_BUTTONS, 1, name="button_head")(btn)[..., 0]
        sticks = ElementwiseDense(NUM_STICKS, STICK_GRID**2, name="stick_head")(stk).reshape(
            b, NUM_STICKS, STICK_GRID, STICK_GRID
        )
        if c.cap_click:
            cap_xy = jax.lax.stop_gradient(grid_expectation(sticks))  # [B, 2, 2]: where each cap is read
            clicks = CapClickReadout(c.head_dim, name="cap_click")(
                cur_f, tmpl_f, narrow.reshape(b, h, w, c.roi_channels), cap_xy, family_p
            )
            buttons = buttons.at[:, list(THUMB_INDICES)].set(clicks)
        return {
            "changed": nn.Dense(1, name="change_head")(fused)[..., 0],
            "family": family_logits,
            "buttons": buttons,
            "sticks": sticks,
            "triggers": ElementwiseDense(NUM_TRIGGERS, 1, name="trigger_head")(trg)[..., 0],
        }


def bilinear_sample(image: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    """image [B, H, W, C] at pixel-centre coordinates u (x), v (y) [B, P] -> [B, P, C]; edges clamp."""

    def one(im, uu, vv):  # [H, W, C], [P], [P] -> [P, C]
        read = lambda channel: map_coordinates(channel, [vv, uu], order=1, mode="nearest")  # noqa: E731
        return jax.vmap(read, in_axes=2, out_axes=1)(im)

    return jax.vmap(one)(image, u, v)


@functools.cache
def stick_geometry() -> np.ndarray:
    """float32 [F, 2, 2, 3]: per family, stick (j_left, j_right) and axis (x, y), the ring centre and the cap's travel
    at full deflection and its radius, as fractions of the template frame's width (x) or height (y)."""
    geo = np.zeros((len(FAMILIES), NUM_STICKS, 2, 3), np.float32)
    for f, family in enumerate(FAMILIES):
        size = canonical_size(family)
        rings = {e.name: e for e in LAYOUTS[family].elements if e.kind == "stick"}
        for s, name in enumerate(("j_left", "j_right")):
            e = rings[name]
            for axis, centre in enumerate((e.cx, e.cy)):
                geo[f, s, axis] = (centre, e.w / 2 * STICK_TRAVEL, e.w / 2 * STICK_CAP)
                geo[f, s, axis] /= size[axis]
    return geo


def cap_lattice(stick_xy: jax.Array, lattice: int, reach: float) -> jax.Array:
    """Stick readings [B, 2, 2] -> a lattice x lattice grid over each cap, spanning +-reach cap radii around where
    the renderer draws it, in every family's layout: (x, y) as fractions of the template frame [B, F, 2, L, 2]."""
    geo = jnp.asarray(stick_geometry())  # [F, 2, 2, 3]
    t = jnp.linspace(-reach, reach, lattice)
    offsets = jnp.stack([a.ravel() for a in jnp.meshgrid(t, t, indexing="xy")], -1)  # [L, 2] in cap radii
    centre = geo[None, ..., 0] + stick_xy[:, None] * geo[None, ..., 1]  # [B, F, 2, 2]
    return centre[:, :, :, None] + offsets * geo[None, :, :, None, :, 2]


class CapClickReadout(nn.Module):
    """A stick click lights the cap wherever the stick holds it, so it is read at the cap: a small lattice over the
    cap, placed at the stick's read position, samples the current frame's pixels and the narrowed fused map, and
    the same lattice over the idle cap at the ring's centre samples the neutral template (what "not lit" looks like
    in this style). The box read-out that other buttons use must instead learn "lit" separately at every position
    of the cap in the box, and missed most clicks at full deflection."""

    width: int
    lattice: int = 5  # points per side of the lattice
    reach: float = 1.2  # the lattice spans +-reach cap radii

    @nn.compact
    def __call__(self, cur, template, fused, cap_xy, family_p):
        """cur, template [B, H, W, 3] normalised; fused [B, h, w, C]; cap_xy [B, 2, 2] stick readings in [-1, 1];
        family_p [B, F] -> click logits [B, 2] (left_thumb, right_thumb)."""
        b = cur.shape[0]

        def sample(image, at):  # lattice fractions [B, F, 2, L, 2] -> [B, F, 2, L * C]
            hh, ww = image.shape[1:3]
            got = bilinear_sample(image, (at[..., 0] * ww - 0.5).reshape(b, -1), (at[..., 1] * hh - 0.5).reshape(b, -1))
            return got.reshape(*at.shape[:3], -1)

        at_cap = cap_lattice(cap_xy, self.lattice, self.reach)
        at_rest = cap_lattice(jnp.zeros_like(cap_xy), self.lattice, self.reach)
        feats = jnp.concatenate([sample(cur, at_cap), sample(fused, at_cap), sample(template, at_rest)], -1)
        feats = jnp.einsum("bfsd,bf->bsd", feats, family_p)
        hidden = nn.gelu(nn.LayerNorm(name="norm")(nn.Dense(self.width, name="read_in")(feats)))
        return ElementwiseDense(NUM_STICKS, 1, name="head")(hidden)[..., 0]


class ElementwiseDense(nn.Module):
    """A separate Dense per element: [B, K, D] -> [B, K, out] with weights [K, D, out]."""

    count: int
    features: int

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.lecun_normal(batch_axis=(0,))
        kernel = self.param("kernel", init, (self.count, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.count, self.features))
        return jnp.einsum("bkd,kdo->bko", x, kernel) + bias


def element_names() -> tuple[str, ...]:
    """The read-out's elements in output order: the 17 buttons, the two sticks, the two triggers."""
    return (*STANDARD_BUTTONS, "j_left", "j_right", "left_trigger", "right_trigger")


@functools.cache
def roi_sampling(grid: int, map_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sampling of every element's box on a grid x grid lattice, per family: (indices int32 [F, K*g*g, 4]
    into the flattened map, weights float32 [F, K*g*g, 4]). Boxes come from the family's layout (`element_boxes`),
    so the read-out looks where the renderer draws, whatever the style."""
    h, w = map_hw
    idx = np.zeros((len(FAMILIES), NUM_ELEMENTS * grid * grid, 4), np.int32)
    wts = np.zeros(idx.shape, np.float32)
    t = (np.arange(grid) + 0.5) / grid
    for f, family in enumerate(FAMILIES):
        cw, ch = canonical_size(family)
        boxes = element_boxes(family)
        for k, name in enumerate(element_names()):
            bx, by, bw, bh = boxes[name]
            gy, gx = np.meshgrid(by + t * bh, bx + t * bw, indexing="ij")
            u, v = (gx / cw * w - 0.5).ravel(), (gy / ch * h - 0.5).ravel()  # map pixel-centre coordinates
            u0, v0 = np.floor(u), np.floor(v)
            fu, fv = u - u0, v - v0
            sl = slice(k * grid * grid, (k + 1) * grid * grid)
            for j, (du, dv, wt) in enumerate(
                ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)), (0, 1, (1 - fu) * fv), (1, 1, fu * fv))
            ):
                uu, vv = np.clip(u0 + du, 0, w - 1), np.clip(v0 + dv, 0, h - 1)
                idx[f, sl, j] = (vv * w + uu).astype(np.int32)
                wts[f, sl, j] = wt
    return idx, wts


def decode_outputs(out: dict) -> dict:
    """Network logits -> the readings: button probabilities, stick (x, y) expectations, trigger levels."""
    return {
        "buttons": jax.nn.sigmoid(out["buttons"]),
        "j_left": grid_expectation(out["sticks"][:, 0]),
        "j_right": grid_expectation(out["sticks"][:, 1]),
        "triggers": jax.nn.sigmoid(out["triggers"]),
    }


@dataclasses.dataclass(frozen=True)
class ParsedPads:
    """What the parser read off N frames."""

    buttons: np.ndarray  # float32 [N, 17] probabilities, STANDARD_BUTTONS order
    j_left: np.ndarray  # float32 [N, 2] in [-1, 1], y down
    j_right: np.ndarray  # float32 [N, 2]
    triggers: np.ndarray  # float32 [N, 2] in [0, 1]

    def __len__(self) -> int:
        return self.buttons.shape[0]


def _check_crops(name: str, a: np.ndarray, batched: bool) -> np.ndarray:
    a = np.asarray(a)
    want = (*PARSER_INPUT_HW, 3)
    if a.dtype != np.uint8 or a.shape[-3:] != want or a.ndim != (4 if batched else 3):
        shape = f"[N, {want[0]}, {want[1]}, 3]" if batched else f"[{want[0]}, {want[1]}, 3]"
        raise ValueError(f"{name} must be uint8 {shape} RGB (rectified with rectify()), got {a.dtype} {a.shape}")
    return a


@functools.cache
def reading_fn(config: ParserConfig):
    """The jitted (params, prev, cur, template) -> readings of a config, shared by every parser with that config
    (so a reloaded parser does not compile again)."""
    net = OverlayParserNet(config)
    return jax.jit(lambda p, a, b, t: decode_outputs(cast(dict, net.apply({"params": p}, a, b, t))))


class OverlayParser:
    """A ParserConfig plus its float32 params. `parse` runs jitted in batches of `batch_size` (fewer frames: the next
    power of two), the last one padded, so a parser compiles for a handful of shapes at most."""

    def __init__(self, config: ParserConfig, params, batch_size: int = 64):
        self.config, self.params, self.batch_size = config, params, batch_size
        self.net = OverlayParserNet(config)
        self._apply = reading_fn(config)

    @classmethod
    def init(cls, config: ParserConfig | None = None, seed: int = 0) -> OverlayParser:
        config = config or ParserConfig()
        return cls(config, init_parser_params(config, jax.random.key(seed)))

    @classmethod
    def load(cls, path: str | Path | None = None) -> OverlayParser:
        """Weights from a `save` directory; None -> the weights shipped in data/overlay/weights/."""
        path = Path(path) if path is not None else WEIGHTS_DIR
        for f in (PARAMS_FILE, CONFIG_FILE):
            if not (path / f).is_file():
                raise FileNotFoundError(f"{path / f} not found: not an OverlayParser.save directory")
        config = ParserConfig.from_dict(json.loads((path / CONFIG_FILE).read_text())["config"])
        target = jax.tree.map(lambda a: np.zeros(a.shape, STORED_DTYPE), abstract_parser_params(config))
        params = flax.serialization.from_bytes(target, (path / PARAMS_FILE).read_bytes())
        return cls(config, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params))

    def save(self, path: str | Path, **extra: Any) -> None:
        """msgpack params (stored as float16: half the size, readings unchanged to ~1e-3) + JSON config (and any
        `extra` facts, e.g. the training command) in `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        stored = jax.tree.map(lambda a: np.asarray(a, STORED_DTYPE), jax.device_get(self.params))
        (path / PARAMS_FILE).write_bytes(flax.serialization.to_bytes(stored))
        (path / CONFIG_FILE).write_text(json.dumps({"config": self.config.to_dict(), **extra}, indent=2) + "\n")

    def parse(self, prev: np.ndarray, cur: np.ndarray, template: np.ndarray) -> ParsedPads:
        """prev/cur uint8 [N, H, W, 3] rectified crops of consecutive frames, template uint8 [H, W, 3]."""
        prev, cur = _check_crops("prev", prev, True), _check_crops("cur", cur, True)
        template = _check_crops("template", template, False)
        if prev.shape != cur.shape:
            raise ValueError(f"prev and cur must have the same shape, got {prev.shape} and {cur.shape}")
        n = cur.shape[0]
        bs = min(self.batch_size, 1 << max(0, n - 1).bit_length())
        tmpl = np.broadcast_to(template, (bs, *template.shape))
        parts = []
        for start in range(0, n, bs):
            a, b = prev[start : start + bs], cur[start : start + bs]
            pad = bs - a.shape[0]
            if pad:  # keep one batch shape, so the last partial batch does not compile again
                a, b = (np.concatenate([v, np.repeat(v[-1:], pad, 0)]) for v in (a, b))
            out = jax.device_get(self._apply(self.params, a, b, tmpl))
            parts.append({k: v[: bs - pad] for k, v in out.items()})
        cat = {
            k: np.concatenate([p[k] for p in parts]).astype(np.float32)
            if parts
            else np.zeros((0, NUM_BUTTONS if k == "buttons" else 2), np.float32)
            for k in ("buttons", "j_left", "j_right", "triggers")
        }
        return ParsedPads(**cat)


def dummy_parser_inputs(config: ParserConfig, batch_size: int = 1):
    z = jnp.zeros((batch_size, *config.input_hw, 3), jnp.uint8)
    return z, z, z


def init_parser_params(config: ParserConfig, rng) -> dict:
    net = OverlayParserNet(config)
    return jax.jit(lambda r: net.init(r, *dummy_parser_inputs(config))["params"])(rng)


def abstract_parser_params(config: ParserConfig) -> dict:
    net = OverlayParserNet(config)
    return jax.eval_shape(lambda r: net.init(r, *dummy_parser_inputs(config))["params"], jax.random.key(0))


def resize_to_input(image: np.ndarray) -> np.ndarray:
    """An image in a family's template frame (e.g. a neutral template, RGB uint8) -> PARSER_INPUT_HW, area-averaged
    so thin outlines survive the downscale."""
    h, w = PARSER_INPUT_HW
    return cv2.resize(np.ascontiguousarray(image[..., :3]), (w, h), interpolation=cv2.INTER_AREA)


def rectify(frame: np.ndarray, affine_template_to_frame: np.ndarray, family: str) -> np.ndarray:
    """Warp a video frame (RGB uint8 [H, W, 3]) into the template frame of `family` (canonical_size), then resize
    to PARSER_INPUT_HW. Warping at the template's own size first and area-resizing after keeps the result free of
    aliasing whatever the overlay's scale on screen."""
    affine = np.asarray(affine_template_to_frame, np.float64)
    if affine.shape != (2, 3) or not np.isfinite(affine).all():
        raise ValueError(f"affine_template_to_frame must be a finite 2x3 matrix, got {affine.shape}")
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be uint8 [H, W, 3] RGB, got {frame.dtype} {frame.shape}")
    width, height = canonical_size(family)
    warped = cv2.warpAffine(
        frame, affine, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    return resize_to_input(warped)
