"""Stage 1 of overlay extraction: find the input overlay in a video and the affine that maps its template onto it.

A template library holds the neutral render of every known style (`styles.STYLES`) plus any template a user adds
from a screenshot of their own overlay. SIFT features of every template are computed once and indexed once (FLANN).
For a video, SIFT runs on frames sampled across it (25 by default) and on their per-pixel median, which keeps the
static overlay while averaging away moving gameplay and the short-lived highlights of pressed buttons. Each frame
feature is matched to its nearest library features and kept per template by Lowe's ratio test.

Overlays sit still, so a template's matches from all frames are pooled and RANSAC fits one similarity transform
(scale, rotation, shift: what streaming software does to an overlay) to them. Small overlays in low-bitrate video
give only a handful of correct matches per frame, but the pool collects them across frames. The match counts
distinct template features among the RANSAC inliers, needs >= 20 of them, inliers from >= 3 frames and a plausible
shape (upright, sane scale, mostly on screen); the template with the most wins. Features are upright (orientation
fixed at 0): overlays are drawn upright, and round buttons have no stable orientation to normalise away.

Work per video is bounded: frames are downscaled so their longer side is at most `max_side`, SIFT keeps at most
`max_features` per frame and `template_features` per template, and the frames are visited in a spread order that
stops early once one template is matched beyond doubt (`decisive_inliers`).

"No overlay found" is a result with a reason (`LocalizeResult.reason`), never labels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from nitrogen_jax.data.overlay import styles as overlay_styles
from nitrogen_jax.data.overlay.render import neutral_template, render_overlay


@dataclasses.dataclass(frozen=True)
class LocalizeConfig:
    """Knobs of the overlay search; the defaults hold for 360p-1080p video."""

    num_frames: int = 25
    """frames sampled evenly across the video"""
    min_inliers: int = 20
    """RANSAC inliers a frame match needs"""
    min_frames: int = 3
    """sampled frames (the median counting as one) that must contribute inliers"""
    decisive_inliers: int = 60
    """stop visiting frames once a template has this many distinct inliers from min_frames frames"""
    ratio: float = 0.9
    """Lowe's ratio test within a template: best match distance < ratio * second best"""
    neighbours: int = 8
    """library features looked up per frame feature (the ratio test's second best is sought among them)"""
    ransac_px: float = 3.0
    """RANSAC reprojection threshold in (downscaled) frame pixels"""
    max_side: int = 960
    """frames are downscaled so that their longer side is at most this many pixels"""
    retry_upscale: float = 1.5
    """when a search of frames smaller than max_side finds nothing, search again with them upscaled by this much (up
    to max_side): a small overlay on a 360p frame gives SIFT too few features (a 0.68x PS overlay on 640x360: 14
    inliers as is, 34 at 1.5x); 1 turns the second search off"""
    max_features: int = 3000
    """SIFT features kept per frame"""
    template_features: int = 800
    """SIFT features kept per template"""
    frame_contrast: float = 0.02
    """SIFT contrast threshold on frames (lower finds the faint edges of a half-transparent overlay)"""
    min_scale: float = 0.08
    """smallest plausible overlay scale (frame pixels per template pixel)"""
    max_scale: float = 8.0
    """largest plausible overlay scale"""
    max_rotation_deg: float = 20.0
    """overlays are drawn upright; a match rotated more than this is a coincidence"""
    min_visible: float = 0.6
    """fraction of the placed template that must lie inside the frame"""

    def __post_init__(self):
        if self.retry_upscale < 1:
            raise ValueError(
                f"LocalizeConfig.retry_upscale must be >= 1 (1 turns the retry off), got {self.retry_upscale}"
            )
        if self.num_frames < 1 or self.min_inliers < 3 or self.min_frames < 1:
            raise ValueError(
                f"LocalizeConfig: num_frames >= 1, min_inliers >= 3 and min_frames >= 1 are needed, got "
                f"{self.num_frames}, {self.min_inliers}, {self.min_frames}"
            )
        if not 0 < self.ratio < 1:
            raise ValueError(f"LocalizeConfig.ratio must be in (0, 1), got {self.ratio}")


@dataclasses.dataclass(frozen=True)
class Template:
    """One overlay appearance: its neutral image in the family's template frame and its SIFT features there."""

    name: str
    family: str
    image: np.ndarray  # RGB uint8 [H, W, 3] at styles.canonical_size(family)
    source: str  # "builtin" or the screenshot's path
    points: np.ndarray  # float32 [K, 2] keypoint positions (template pixels)
    descriptors: np.ndarray  # float32 [K, 128]
    mask: np.ndarray | None = None  # bool [H, W]: where the overlay draws (None: everywhere, a screenshot)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the template frame."""
        return self.image.shape[1], self.image.shape[0]

    def corners(self) -> np.ndarray:
        w, h = self.size
        return np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)


def upright_sift(gray: np.ndarray, max_features: int, contrast: float = 0.04) -> tuple[np.ndarray, np.ndarray | None]:
    """(keypoint positions [K, 2], descriptors [K, 128] float32) with every orientation fixed at 0."""
    sift = cv2.SIFT.create(nfeatures=max_features, contrastThreshold=contrast)  # the class form of cv2.SIFT_create
    unique: dict[tuple[float, float, float], cv2.KeyPoint] = {}
    for k in sift.detect(gray, None):  # SIFT repeats a keypoint once per dominant orientation: keep one
        k.angle = 0.0
        unique.setdefault((round(k.pt[0], 1), round(k.pt[1], 1), round(k.size, 1)), k)
    if not unique:
        return np.zeros((0, 2), np.float32), None
    keypoints, descriptors = sift.compute(gray, list(unique.values()))
    if descriptors is None:
        return np.zeros((0, 2), np.float32), None
    return np.array([k.pt for k in keypoints], np.float32), descriptors.astype(np.float32)


def make_template(
    name: str,
    family: str,
    image: np.ndarray,
    source: str = "builtin",
    cfg: LocalizeConfig = LocalizeConfig(),
    mask: np.ndarray | None = None,
) -> Template:
    """A template from an RGB image already in the family's template frame; its SIFT features computed once.

    Templates are small (a few hundred pixels), so features are found on a 2x upsampled copy, which roughly doubles
    their count and lets a template match overlays drawn larger than itself.
    """
    if family not in overlay_styles.FAMILIES:
        raise ValueError(f"template {name!r}: family {family!r} is not one of {overlay_styles.FAMILIES}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"template {name!r}: expected an RGB uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    up = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    points, descriptors = upright_sift(cv2.cvtColor(up, cv2.COLOR_RGB2GRAY), cfg.template_features)
    if descriptors is None or len(points) < cfg.min_inliers:
        raise ValueError(
            f"template {name!r} ({source}): only {len(points)} SIFT features, a match needs "
            f"{cfg.min_inliers}; is the image the overlay itself (not a blank or tiny crop)?"
        )
    return Template(name, family, image, source, points / 2.0, descriptors, mask)


def screenshot_template(path: str | Path, family: str, cfg: LocalizeConfig = LocalizeConfig()) -> Template:
    """A user's template: a screenshot of their overlay with nothing pressed, cropped to the overlay's edges.

    The crop is scaled to the family's template frame, so the parser sees its crops where it expects each element.
    A transparent PNG is composited over black.
    """
    path = Path(path)
    if family not in overlay_styles.FAMILIES:
        raise ValueError(f"--family {family!r} for template {path}: expected one of {overlay_styles.FAMILIES}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"template {path}: missing or not an image OpenCV can read")
    if raw.ndim == 2:
        raw = cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
    if raw.shape[2] == 4:
        alpha = raw[..., 3:].astype(np.float32) / 255.0
        raw = (raw[..., :3].astype(np.float32) * alpha).round().astype(np.uint8)
    rgb = cv2.cvtColor(raw[..., :3], cv2.COLOR_BGR2RGB)
    w, h = overlay_styles.canonical_size(family)
    rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if rgb.shape[1] > w else cv2.INTER_CUBIC)
    return make_template(f"user:{path.name}", family, rgb, str(path), cfg)


class TemplateLibrary:
    """Templates with their descriptors stacked, so one nearest-neighbour query per frame serves all of them."""

    def __init__(self, templates: list[Template], cfg: LocalizeConfig = LocalizeConfig()):
        if not templates:
            raise ValueError("TemplateLibrary needs at least one template")
        self.templates, self.cfg = list(templates), cfg
        self.descriptors = np.concatenate([t.descriptors for t in templates])
        self.owner = np.concatenate([np.full(len(t.descriptors), i, np.int32) for i, t in enumerate(templates)])
        self.points = np.concatenate([t.points for t in templates])
        self.index = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64})  # FLANN_INDEX_KDTREE
        self._by_family = {
            f: np.array([i for i, t in enumerate(templates) if t.family == f], np.int32)
            for f in overlay_styles.FAMILIES
        }
        self.index.add([self.descriptors])
        self.index.train()

    @classmethod
    def builtin(
        cls,
        style_names: tuple[str, ...] | None = None,
        cfg: LocalizeConfig = LocalizeConfig(),
        extra: tuple[Template, ...] = (),
    ) -> TemplateLibrary:
        """The neutral render of each named style (default: every style), plus `extra` templates."""
        names = tuple(overlay_styles.STYLES) if style_names is None else style_names
        unknown = [n for n in names if n not in overlay_styles.STYLES]
        if unknown:
            raise ValueError(f"unknown overlay styles {unknown}; known: {sorted(overlay_styles.STYLES)}")
        built = []
        for n in names:
            style = overlay_styles.STYLES[n]
            drawn = render_overlay(style, None)[..., 3] > 0
            built.append(make_template(n, style.family, neutral_template(style), cfg=cfg, mask=drawn))
        return cls(built + list(extra), cfg)

    def __len__(self) -> int:
        return len(self.templates)

    def family_templates(self, family: str) -> np.ndarray:
        """Indices of the family's templates."""
        return self._by_family[family]


@dataclasses.dataclass
class Correspondences:
    """Ratio-tested matches pooled over frames: template, template feature, frame position, frame."""

    template: list[np.ndarray] = dataclasses.field(default_factory=list)
    feature: list[np.ndarray] = dataclasses.field(default_factory=list)  # row in the library's stacked features
    xy: list[np.ndarray] = dataclasses.field(default_factory=list)  # full-resolution frame pixels
    frame: list[np.ndarray] = dataclasses.field(default_factory=list)

    def add(self, template, feature, xy, frame: int) -> None:
        self.template.append(template)
        self.feature.append(feature)
        self.xy.append(xy)
        self.frame.append(np.full(len(template), frame, np.int32))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.template:
            return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros((0, 2), np.float32), np.zeros(0, np.int32)
        return (
            np.concatenate(self.template),
            np.concatenate(self.feature),
            np.concatenate(self.xy),
            np.concatenate(self.frame),
        )


@dataclasses.dataclass(frozen=True)
class LocalizeResult:
    """Where the overlay is, or why none was found."""

    found: bool
    reason: str  # why not found, or a one-line summary of the match
    template: Template | None = None
    affine: np.ndarray | None = None  # float64 [2, 3], template frame -> video frame
    bbox: tuple[int, int, int, int] | None = None  # [x, y, w, h] of the overlay in the video, pixels, clipped
    frames_sampled: int = 0
    frames_visited: int = 0  # sampled frames (and the median) searched before the result was certain
    inliers: int = 0  # distinct template features among the RANSAC inliers
    inliers_per_frame: tuple[int, ...] = ()  # per frame that contributed inliers
    candidates: tuple[dict, ...] = ()  # the best-fitting templates: name, family, inliers, frames

    @property
    def family(self) -> str | None:
        return None if self.template is None else self.template.family

    def summary(self) -> dict:
        out = {
            "found": self.found,
            "reason": self.reason,
            "frames_sampled": self.frames_sampled,
            "frames_visited": self.frames_visited,
            "candidates": list(self.candidates),
        }
        if self.found:
            assert self.template is not None and self.affine is not None and self.bbox is not None  # set when found
            out.update(
                template=self.template.name,
                family=self.family,
                bbox=list(self.bbox),
                affine=np.round(self.affine, 4).tolist(),
                inliers=self.inliers,
                frames_with_inliers=len(self.inliers_per_frame),
            )
        return out


def _plausible(affine: np.ndarray, template: Template, frame_w: int, frame_h: int, cfg: LocalizeConfig) -> bool:
    a, b = affine[0, 0], affine[1, 0]
    scale, angle = float(np.hypot(a, b)), float(np.degrees(np.arctan2(b, a)))
    if not (cfg.min_scale <= scale <= cfg.max_scale and abs(angle) <= cfg.max_rotation_deg):
        return False
    corners = template.corners() @ affine[:, :2].T + affine[:, 2]
    x0, y0 = corners.min(0)
    x1, y1 = corners.max(0)
    inside = max(0.0, min(x1, frame_w) - max(x0, 0)) * max(0.0, min(y1, frame_h) - max(y0, 0))
    return inside >= cfg.min_visible * (x1 - x0) * (y1 - y0)


def search_scale(frame_hw: tuple[int, int], cfg: LocalizeConfig, retry: bool = False) -> float:
    """The factor frames are resized by before SIFT: down to max_side, or on a retry up by retry_upscale (capped at
    max_side; 1.0 means the retry would search the same pixels again)."""
    longest = max(frame_hw)
    if not retry:
        return min(1.0, cfg.max_side / longest)
    return max(1.0, min(cfg.retry_upscale, cfg.max_side / longest))


def match_frame(frame: np.ndarray, index: int, library: TemplateLibrary, pool: Correspondences, s: float) -> None:
    """Add this RGB frame's ratio-tested matches (per template) to `pool`; SIFT runs on the frame resized by `s`
    (`search_scale`), and the matches are in the frame's own pixels."""
    cfg = library.cfg
    h, w = frame.shape[:2]
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if s != 1.0:
        interpolation = cv2.INTER_AREA if s < 1.0 else cv2.INTER_CUBIC
        gray = cv2.resize(gray, (round(w * s), round(h * s)), interpolation=interpolation)
    points, descriptors = upright_sift(gray, cfg.max_features, cfg.frame_contrast)
    if descriptors is None:
        return
    k = min(cfg.neighbours, len(library.descriptors))
    found = library.index.knnMatch(descriptors, k=k)
    n = len(found)
    idx = np.full((n, k), -1, np.int64)
    dist = np.full((n, k), np.inf, np.float32)
    for i, row in enumerate(found):
        for j, m in enumerate(row):
            idx[i, j], dist[i, j] = m.trainIdx, m.distance
    owner = np.where(idx >= 0, library.owner[np.maximum(idx, 0)], -1)
    # per template: its best neighbour (the row's first of that template) against its second, or, when the second
    # is not among the k looked up, against the k-th distance (a lower bound on it, so the test is conservative)
    for t in np.unique(owner[owner >= 0]):
        mine = owner == t
        has = mine.any(axis=1)
        first = np.argmax(mine, axis=1)
        second_mask = mine.copy()
        second_mask[np.arange(n), first] = False
        has_second = second_mask.any(axis=1)
        second = np.argmax(second_mask, axis=1)
        d1 = dist[np.arange(n), first]
        d2 = np.where(has_second, dist[np.arange(n), second], dist[:, -1])
        ok = has & (d1 < cfg.ratio * d2)
        if ok.any():
            pool.add(np.full(ok.sum(), t, np.int32), idx[ok, first[ok]], points[ok] / s, index)


def fit_family(
    pool: Correspondences,
    family: str,
    library: TemplateLibrary,
    frame_w: int,
    frame_h: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """RANSAC similarity on the pooled matches of every template of `family` (styles of a family share their
    template frame, so their matches all vote for one placement): (affine [2, 3] template -> frame, inlier mask
    over the pool) or None."""
    cfg = library.cfg
    template_of, feature, xy, _ = pool.arrays()
    sel = np.isin(template_of, library.family_templates(family))
    if sel.sum() < cfg.min_inliers:
        return None
    cv2.setRNGSeed(len(family))  # RANSAC draws from OpenCV's global generator: make it repeatable
    scale = max(frame_w, frame_h) / cfg.max_side if max(frame_w, frame_h) > cfg.max_side else 1.0
    affine, mask = cv2.estimateAffinePartial2D(
        library.points[feature[sel]],
        xy[sel],
        method=cv2.RANSAC,
        ransacReprojThreshold=cfg.ransac_px * scale,
        maxIters=5000,
        confidence=0.999,
        refineIters=10,
    )
    if affine is None:
        return None
    affine = affine.astype(np.float64)
    first = library.templates[library.family_templates(family)[0]]
    if not _plausible(affine, first, frame_w, frame_h, cfg):
        return None
    inlier = np.zeros(len(sel), bool)
    inlier[np.flatnonzero(sel)[mask.ravel() > 0]] = True
    return affine, inlier


@dataclasses.dataclass(frozen=True)
class _Fit:
    family: str
    affine: np.ndarray
    distinct: int  # distinct template positions among the inliers
    frames: dict  # frame -> inliers from it


def _fits(pool: Correspondences, library: TemplateLibrary, frame_w: int, frame_h: int) -> list[_Fit]:
    template_of, feature, _, frame = pool.arrays()
    out = []
    for family in sorted({library.templates[t].family for t in np.unique(template_of)}):
        fit = fit_family(pool, family, library, frame_w, frame_h)
        if fit is None:
            continue
        affine, inlier = fit
        frames, counts = np.unique(frame[inlier], return_counts=True)
        # a feature found in several styles at one spot is one piece of evidence: count positions (2 px cells)
        cells = np.unique(np.round(library.points[feature[inlier]] / 2).astype(np.int64), axis=0)
        out.append(_Fit(family, affine, len(cells), dict(zip(frames.tolist(), counts.tolist(), strict=True))))
    return sorted(out, key=lambda f: -f.distinct)


def _edges(rgb: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-6))


def closest_look(frame: np.ndarray, affine: np.ndarray, templates: list[Template]) -> Template:
    """The template of a family that looks most like the overlay placed by `affine`.

    Styles of one family share their arrangement, so one fit places them all and the feature count alone can
    prefer a look-alike. Two correlations decide: of edges over the whole template frame (they survive the
    overlay's transparency over any background; an outline style matches its own lines), and of colours where the
    template draws (a neon outline and a white one have the same edges, not the same colour).
    A translucent overlay shows as opacity * look + (1 - opacity) * game: one gain for all channels and, over the
    game's colours, an offset per channel. So the colours are correlated as one vector after each channel is
    centred on its own mean. Centring all channels on one mean let a grey overlay at half opacity over blue water
    correlate best with the blue style (`ps_blue_glow` chosen for `ps_square_mono`), and the parser, reading against
    the wrong neutral look, saw a quarter of the buttons pressed.
    """
    best, best_score = templates[0], -np.inf
    for t in templates:
        w, h = t.size
        crop = cv2.warpAffine(frame, affine, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        drawn = np.ones((h, w), bool) if t.mask is None else t.mask
        seen, look = crop[drawn].astype(np.float32), t.image[drawn].astype(np.float32)
        score = _ncc(_edges(crop), _edges(t.image)) + _ncc(seen - seen.mean(0), look - look.mean(0))
        if score > best_score:
            best, best_score = t, score
    return best


def spread_order(n: int) -> list[int]:
    """0..n-1 in an order that covers the range evenly early on (0, n/2, n/4, 3n/4, ...)."""
    order: list[int] = []
    step = n
    while len(order) < n and step >= 1:
        order += [i for i in range(0, n, step) if i not in order]
        step //= 2
    return order + [i for i in range(n) if i not in order]


def localize(frames: list[np.ndarray], library: TemplateLibrary) -> LocalizeResult:
    """Find the overlay in RGB frames sampled across one video (all the same size)."""
    cfg = library.cfg
    if not frames:
        return LocalizeResult(False, "no overlay found: no frames could be decoded to search")
    h, w = frames[0].shape[:2]
    median = np.median(np.stack(frames), axis=0).astype(np.uint8) if len(frames) > 2 else None
    visits = ([(len(frames), median)] if median is not None else []) + [
        (i, frames[i]) for i in spread_order(len(frames))
    ]
    first, retry = search_scale((h, w), cfg), search_scale((h, w), cfg, retry=True)
    scales = [first, retry] if retry > first else [first]
    visited = 0
    for scale in scales:
        pool, fits = Correspondences(), []
        for k, (index, frame) in enumerate(visits):
            match_frame(frame, index, library, pool, scale)
            visited += 1
            if k + 1 >= cfg.min_frames and (k + 1) % 4 == 0 or k + 1 == len(visits):
                fits = _fits(pool, library, w, h)
                if fits and fits[0].distinct >= cfg.decisive_inliers and len(fits[0].frames) >= cfg.min_frames:
                    break
        good = [f for f in fits if f.distinct >= cfg.min_inliers and len(f.frames) >= cfg.min_frames]
        if good:
            break
    candidates = tuple({"family": f.family, "inliers": f.distinct, "frames": len(f.frames)} for f in fits)
    if not good:
        if not fits:
            why = f"no template had {cfg.min_inliers} matches agreeing on one placement"
        else:
            best = fits[0]
            why = (
                f"the best family ({best.family}) had {best.distinct} inliers from "
                f"{len(best.frames)} frames; {cfg.min_inliers} inliers from {cfg.min_frames} frames needed"
            )
        return LocalizeResult(
            False,
            f"no overlay found in {visited} searched frames: {why}",
            frames_sampled=len(frames),
            frames_visited=visited,
            candidates=candidates,
        )
    best = good[0]
    look = median if median is not None else frames[0]
    template = closest_look(look, best.affine, [library.templates[t] for t in library.family_templates(best.family)])
    placed = template.corners() @ best.affine[:, :2].T + best.affine[:, 2]
    x0, y0 = np.floor(np.clip(placed.min(0), 0, None))
    x1, y1 = np.ceil(np.minimum(placed.max(0), (w, h)))
    bbox = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
    reason = (
        f"{template.name} ({template.family}): {best.distinct} inliers from {len(best.frames)} of {visited} "
        "searched frames" + (f" (found on the retry at {scale:g}x)" if scale > first else "")
    )
    return LocalizeResult(
        True,
        reason,
        template,
        best.affine,
        bbox,
        frames_sampled=len(frames),
        frames_visited=visited,
        inliers=best.distinct,
        inliers_per_frame=tuple(best.frames.values()),
        candidates=candidates,
    )
