"""Training and evaluation examples for the overlay parser: rendered overlays over real gameplay, degraded the way
the extractor will see them.

One example is what the extractor hands the parser for one video frame: the previous and current frame's overlay,
each composited over a gameplay background at a random scale and opacity, compressed (JPEG at a random quality as a
fast stand-in for a video codec), then rectified back into the template frame through an affine that is slightly
wrong (what SIFT + RANSAC localisation error looks like: a pixel or two, about a degree, about 2% scale) and resized
to PARSER_INPUT_HW; plus the style's neutral template at that size and the true current PadState.

Pad states come half from `random_pad_stream` (consecutive frames of a plausible player, so prev and cur are real
temporal pairs) and half drawn independently per element (every combination of presses, sticks anywhere in the
square), so rare combinations are not rare in training. A share of examples can come from real compressed videos
written by `make_overlay_video` (`VideoCrops`), so the parser also sees true codec artefacts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import cv2
import grain
import numpy as np

from nitrogen_jax.data.overlay.parser import CHANGE_MAP_HW, NUM_BUTTONS, rectify, resize_to_input
from nitrogen_jax.data.overlay.render import PadState, composite, neutral_template, render_premultiplied
from nitrogen_jax.data.overlay.styles import FAMILIES, STYLES, OverlayStyle, canonical_size, random_style
from nitrogen_jax.data.overlay.synth import gameplay_frames, random_pad_stream

TRIGGER_BUTTON_INDEX = (9, 13)  # left_trigger, right_trigger in STANDARD_BUTTONS


@dataclasses.dataclass(frozen=True)
class Degradation:
    """The ranges examples are drawn from (defaults follow the issue: scale 0.6-1.2, opacity 0.5-1)."""

    scale: tuple[float, float] = (0.6, 1.2)
    opacity: tuple[float, float] = (0.5, 1.0)
    jpeg_quality: tuple[int, int] = (20, 95)
    shift_px: float = 1.5  # rectification error: translation (frame pixels, per axis, uniform +-)
    rotation_deg: float = 1.0  # rotation (uniform +-)
    scale_error: float = 0.02  # relative scale (uniform +-)
    exact_share: float = 0.0
    """share of examples rectified with no error at all, as SIFT + RANSAC place an overlay on a clean recording
    (the extraction bench's worst corner is 0.7 px off). Tried against the cap click read-out's phantom clicks,
    which it did not cure: their trigger was full opacity, cured by `full_opacity_share` (docs/overlay-parser.md)."""
    sprite_share: float = 0.0
    """share of gameplay backgrounds that get `game_sprites` (blobs that look like a stick cap through a ring)."""
    sprite_motion: int = 0
    """the sprites move by up to this many pixels per axis between the previous and the current frame, as game
    objects do (0: they stand still)."""
    line_share: float = 0.0
    """share of the sprites drawn as long thin lines, solid or dashed, at any angle: the road edges, lane marks and
    walls that cross a stick's ring and hide or mimic its cap (Enduro's dotted road edge did)."""
    full_opacity_share: float = 0.0
    """share of examples drawn at opacity exactly 1, the overlay tools' default. Uniform draws almost never land
    there, and a parser that never saw a fully opaque overlay read clicks into the neutral stick cap of one."""


def random_pad_state(rng: np.random.Generator) -> PadState:
    """Every element independent: each button pressed with p = 0.3, sticks uniform in the square (a third of the
    time at rest, a sixth at full deflection on some axis), triggers uniform (a third of the time at rest or full)."""
    buttons = rng.random(NUM_BUTTONS) < 0.3

    def stick() -> np.ndarray:
        u = rng.random()
        if u < 1 / 3:
            return np.zeros(2, np.float32)
        v = rng.uniform(-1, 1, 2)
        if u < 0.5:
            v[rng.integers(2)] = rng.choice([-1.0, 1.0])
        return v.astype(np.float32)

    triggers = rng.uniform(0, 1, 2)
    rest = rng.random(2) < 1 / 3
    triggers[rest] = rng.choice([0.0, 1.0], rest.sum())
    buttons[list(TRIGGER_BUTTON_INDEX)] = triggers > 0.5
    return PadState(buttons, stick(), stick(), triggers.astype(np.float32))


def perturb_affine(affine: np.ndarray, family: str, deg: Degradation, rng: np.random.Generator) -> np.ndarray:
    """`affine` (template -> frame) composed with a small similarity about the template centre: the rectification
    error the parser must tolerate."""
    w, h = canonical_size(family)
    angle = np.deg2rad(rng.uniform(-deg.rotation_deg, deg.rotation_deg))
    s = 1 + rng.uniform(-deg.scale_error, deg.scale_error)
    rot = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([w / 2, h / 2])
    m = np.eye(3)
    m[:2, :2], m[:2, 2] = rot, centre - rot @ centre
    a = np.vstack([affine, [0, 0, 1]]) @ m
    a[:2, 2] += rng.uniform(-deg.shift_px, deg.shift_px, 2)
    return a[:2]


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8 through a JPEG round trip (4:2:0 chroma, as video codecs)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


@functools.lru_cache(maxsize=512)
def template_input(style: OverlayStyle) -> np.ndarray:
    """The style's neutral template at PARSER_INPUT_HW: what the parser is given for a style."""
    return resize_to_input(neutral_template(style))


def gameplay_clips(games: Sequence[str], frames: int, seed: int, fps: float = 15.0) -> list[np.ndarray]:
    """One clip per game, uint8 [frames, H, W, 3] native frames of a scripted player (at a low fps, so a clip spans
    more of the game), the backgrounds the overlay is drawn over."""
    rng = np.random.default_rng([seed, 5])
    return [np.stack(list(gameplay_frames(g, random_pad_stream(frames, fps, rng), fps, seed))) for g in games]


def family_index(style: OverlayStyle) -> np.ndarray:
    return np.asarray(FAMILIES.index(style.family), np.int32)


@functools.lru_cache(maxsize=512)
def _neutral_premultiplied(style: OverlayStyle) -> np.ndarray:
    return render_premultiplied(style, None)


def change_map(style: OverlayStyle, premultiplied: np.ndarray) -> np.ndarray:
    """float32 CHANGE_MAP_HW: the share of each cell of the template frame where this render differs from the neutral
    one (a press, a displaced cap, a trigger fill): a dense target that teaches the encoder what to look at long
    before 17 labels per example would."""
    diff = np.abs(premultiplied.astype(np.int16) - _neutral_premultiplied(style)).max(-1) > 32
    h, w = CHANGE_MAP_HW
    return cv2.resize(diff.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)


def background_patch(
    frame: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    sprite_share: float = 0.0,
    sprite_shift: tuple[int, int] = (0, 0),
    line_share: float = 0.0,
) -> np.ndarray:
    """A random region of a gameplay frame shown at a random zoom (games fill screens of any size), as (w, h); now
    and then the flat border colour a 4:3 game leaves beside it. With probability `sprite_share` the region also
    gets `game_sprites`."""
    w, h = size
    if rng.random() < 0.1:
        return np.full((h, w, 3), rng.integers(0, 60, 3), np.uint8)
    zoom = rng.uniform(1.5, 4.0)
    fh, fw = frame.shape[:2]
    cw, ch = min(fw, max(4, int(w / zoom))), min(fh, max(4, int(h / zoom)))
    x, y = rng.integers(0, fw - cw + 1), rng.integers(0, fh - ch + 1)
    patch = cv2.resize(frame[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    if sprite_share > 0 and rng.random() < sprite_share:  # no draw at 0: old streams stay the same
        game_sprites(patch, rng, sprite_shift, line_share)
    return patch


def game_sprites(
    patch: np.ndarray, rng: np.random.Generator, shift: tuple[int, int] = (0, 0), line_share: float = 0.0
) -> None:
    """Draw one to three solid blocks or discs, a stick cap's size or so, in saturated colours: the paddles, cars and
    balls that cross an outline overlay's ring and look like a cap there. The sampled gameplay has too few of them
    in the right place for the parser to learn that a cap is where the template's cap shape is, not any blob.
    A share `line_share` of them are `game_line`s instead."""
    h, w = patch.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        size = max(2, int(rng.uniform(0.04, 0.2) * min(h, w)))
        cx, cy = int(rng.integers(0, w)) + shift[0], int(rng.integers(0, h)) + shift[1]
        color = tuple(int(c) for c in rng.permutation([int(rng.integers(0, 80)), int(rng.integers(80, 256)), 255]))
        if line_share > 0 and rng.random() < line_share:  # no draw at 0: old streams stay the same
            game_line(patch, (cx, cy), color, rng)
        elif rng.random() < 0.5:
            cv2.circle(patch, (cx, cy), size // 2, color, -1, cv2.LINE_AA)
        else:
            a, b = size // 2, int(size * rng.uniform(0.5, 2.5)) // 2  # paddles and cars are long
            hw, hh = (a, b) if rng.random() < 0.5 else (b, a)
            cv2.rectangle(patch, (cx - hw, cy - hh), (cx + hw, cy + hh), color, -1)


def game_line(patch: np.ndarray, centre: tuple[int, int], color: tuple[int, ...], rng: np.random.Generator) -> None:
    """A straight line through `centre`, 1-3 px wide, a third to all of the patch long, at any angle; solid, or
    dashed as road edges and lane marks are; in `color`, or white or grey half the time (the colours of most
    markings)."""
    h, w = patch.shape[:2]
    length = rng.uniform(0.3, 1.0) * max(h, w)
    angle = rng.uniform(0, np.pi)
    d = np.array([np.cos(angle), np.sin(angle)]) * length / 2
    if rng.random() < 0.5:
        color = (int(rng.integers(150, 256)),) * 3
    width = int(rng.integers(1, 4))
    a, b = np.asarray(centre) - d, np.asarray(centre) + d
    dash = int(rng.integers(2, 8)) if rng.random() < 0.5 else 0
    if not dash:
        cv2.line(patch, tuple(int(v) for v in a), tuple(int(v) for v in b), color, width, cv2.LINE_AA)
        return
    steps = max(1, int(length // dash))
    for k in range(0, steps, 2):  # every other dash-long piece
        p, q = a + (b - a) * k / steps, a + (b - a) * (k + 1) / steps
        cv2.line(patch, tuple(int(v) for v in p), tuple(int(v) for v in q), color, width, cv2.LINE_AA)


def draw_opacity(deg: Degradation, rng: np.random.Generator) -> float:
    """An overlay opacity: exactly 1 with probability `deg.full_opacity_share`, else uniform in `deg.opacity`."""
    opacity = float(rng.uniform(*deg.opacity))
    if deg.full_opacity_share > 0 and rng.random() < deg.full_opacity_share:  # no draw at 0: old streams stay the same
        opacity = 1.0
    return opacity


def render_example(
    style: OverlayStyle,
    prev: PadState,
    cur: PadState,
    backgrounds: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
    deg: Degradation = Degradation(),
) -> dict[str, np.ndarray]:
    """One parser example from two pad states over two consecutive background frames."""
    w, h = canonical_size(style.family)
    scale, opacity = rng.uniform(*deg.scale), draw_opacity(deg, rng)
    margin = 6
    size = (int(np.ceil(w * scale)) + 2 * margin, int(np.ceil(h * scale)) + 2 * margin)
    x, y = margin + rng.uniform(-1, 1), margin + rng.uniform(-1, 1)
    quality = int(rng.integers(deg.jpeg_quality[0], deg.jpeg_quality[1] + 1))
    motion = (0, 0)
    if deg.sprite_motion > 0:  # no draw at 0: old streams stay the same
        dx, dy = rng.integers(-deg.sprite_motion, deg.sprite_motion + 1, 2)
        motion = (int(dx), int(dy))
    zoom_state = rng.bit_generator.state  # the same background region (and sprites) for both frames
    crops, affine, overlay = [], None, None
    for state, bg, shift in zip((prev, cur), backgrounds, ((0, 0), motion), strict=True):
        rng.bit_generator.state = zoom_state
        patch = background_patch(bg, size, rng, deg.sprite_share, shift, deg.line_share)
        overlay = render_premultiplied(style, state)
        frame, affine = composite(patch, overlay, x=x, y=y, scale=scale, opacity=opacity, premultiplied=True)
        crops.append(jpeg(frame, quality))
    assert affine is not None and overlay is not None  # set by the two frames above
    exact = deg.exact_share > 0 and rng.random() < deg.exact_share  # no draw at 0: the old streams stay the same
    wrong = affine if exact else perturb_affine(affine, style.family, deg, rng)
    prev_crop, cur_crop = (rectify(c, wrong, style.family) for c in crops)
    return {
        "prev": prev_crop,
        "cur": cur_crop,
        "template": template_input(style),
        **truth_arrays(cur),
        "changed": change_map(style, overlay),
        "family": family_index(style),
    }


def truth_arrays(state: PadState) -> dict[str, np.ndarray]:
    return {
        "buttons": state.buttons.astype(np.float32),
        "j_left": state.j_left,
        "j_right": state.j_right,
        "triggers": state.triggers,
    }


class RenderedPairs:
    """Random-access parser examples: example i is a pure function of (seed, i), so a Grain MapDataset over it is
    reproducible and resumable. Backgrounds are gameplay clips, uint8 [T >= 2, H, W, 3] each (`gameplay_clips`).

    A share `random_style_share` of examples is drawn in one of `num_random_styles` random looks (`random_style`,
    fixed by the seed, spread over the families) instead of a named style: a dozen named looks teach the parser
    those looks, a few hundred random ones teach it to compare any look with its template."""

    def __init__(
        self,
        styles: Sequence[str],
        backgrounds: Sequence[np.ndarray],
        seed: int,
        deg: Degradation = Degradation(),
        stream_share: float = 0.5,
        num_streams: int = 16,
        stream_len: int = 600,
        random_style_share: float = 0.0,
        num_random_styles: int = 240,
    ):
        unknown = [s for s in styles if s not in STYLES]
        if unknown:
            raise ValueError(f"unknown overlay styles {unknown}; known: {sorted(STYLES)}")
        bad = [c.shape for c in backgrounds if c.ndim != 4 or c.shape[0] < 2 or c.shape[3] != 3]
        if not backgrounds or bad:
            raise ValueError(f"backgrounds must be clips of uint8 [frames >= 2, H, W, 3], got {bad or 'none'}")
        if not 0 <= random_style_share <= 1:
            raise ValueError(f"random_style_share must be in [0, 1], got {random_style_share}")
        self.styles, self.backgrounds, self.seed, self.deg = tuple(STYLES[s] for s in styles), backgrounds, seed, deg
        self.stream_share, self.random_style_share = stream_share, random_style_share
        rng = np.random.default_rng([seed, 1])
        self.streams = [random_pad_stream(stream_len, float(rng.choice([30.0, 60.0])), rng) for _ in range(num_streams)]
        style_rng = np.random.default_rng([seed, 7])
        self.random_styles = tuple(
            random_style(FAMILIES[i % len(FAMILIES)], style_rng)
            for i in range(num_random_styles if random_style_share else 0)
        )

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 2, index])
        style = self.styles[rng.integers(len(self.styles))]
        if self.random_styles and rng.random() < self.random_style_share:
            style = self.random_styles[rng.integers(len(self.random_styles))]
        if rng.random() < self.stream_share:
            stream = self.streams[rng.integers(len(self.streams))]
            t = int(rng.integers(1, len(stream)))
            prev, cur = stream[t - 1], stream[t]
        else:
            cur = random_pad_state(rng)
            prev = cur if rng.random() < 0.5 else random_pad_state(rng)
        clip = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        t = int(rng.integers(1, clip.shape[0]))
        return render_example(style, prev, cur, (clip[t - 1], clip[t]), rng, self.deg)


def stack_examples(examples: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def batches(source, batch_size: int, threads: int = 2) -> grain.DatasetIterator:
    """An endless iterator of stacked batches (example i of batch k is source[k * batch_size + i]), rendered by
    `threads` threads ahead of the training step (OpenCV releases the GIL)."""
    ds = grain.MapDataset.range(1 << 40).map(source.__getitem__).batch(batch_size, batch_fn=stack_examples)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=4)).__iter__()


def fixed_set(source, n: int) -> dict[str, np.ndarray]:
    """The first n examples of a source, stacked: an evaluation set."""
    return stack_examples([source[i] for i in range(n)])


class VideoCrops:
    """Examples cut from real compressed overlay videos (`make_overlay_video`): consecutive rectified frames with
    the video's true states, through the video's true affine perturbed like the rendered ones."""

    def __init__(self, videos: Sequence, seed: int, deg: Degradation = Degradation()):
        import av

        rng = np.random.default_rng([seed, 3])
        self.prev, self.cur, self.templates, self.truth = [], [], [], []
        for v in videos:
            frames = []
            with av.open(str(v.path)) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            wrong = perturb_affine(v.overlay_affine, v.family, deg, rng)
            crops = [rectify(f, wrong, v.family) for f in frames]
            for t in range(1, min(len(crops), len(v.truth))):
                self.prev.append(crops[t - 1])
                self.cur.append(crops[t])
                style = STYLES[v.style]
                self.templates.append(style)
                self.truth.append(
                    truth_arrays(v.truth[t])
                    | {
                        "changed": change_map(style, render_premultiplied(style, v.truth[t])),
                        "family": family_index(style),
                    }
                )

    def __len__(self) -> int:
        return len(self.cur)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        i = index % len(self.cur)
        return {
            "prev": self.prev[i],
            "cur": self.cur[i],
            "template": template_input(self.templates[i]),
            **self.truth[i],
        }


class Mixture:
    """Example i from `b` with probability `share_b` (decided by (seed, i)), else from `a`."""

    def __init__(self, a, b, share_b: float, seed: int):
        self.a, self.b, self.share_b, self.seed = a, b, share_b, seed

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 4, index])
        if self.b is not None and rng.random() < self.share_b:
            return self.b[int(rng.integers(1 << 30))]
        return self.a[index]
