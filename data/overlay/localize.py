"""Stage 1 of overlay extraction: find the input overlay in a video and the affine that maps its template onto it.

A template library holds the neutral render of every known style (`styles.STYLES`) plus any template a user adds
from a screenshot of their own overlay. SIFT features of every template are computed once. For a video, SIFT runs
on frames sampled across it (25 by default); every template's descriptors are matched against each frame's
(nearest two, Lowe's ratio test) and RANSAC fits a similarity transform (scale, rotation, shift: what streaming
software does to an overlay) to the matches. A frame match needs >= 20 RANSAC inliers and a plausible shape (upright,
sane scale, mostly on screen). Frames then vote: the template with the most inliers wins, and its placement is the
one that the most frames agree on (corners within a few pixels); it is accepted only when several frames agree, which
is what keeps gameplay that happens to share a few features with a template from passing as an overlay.

Work per video is bounded: frames are downscaled so their longer side is at most `max_side`, SIFT keeps at most
`max_features` per frame and `template_features` per template, and all templates are matched in one FLANN query
per frame.

"No overlay found" is a result with a reason (`LocalizeResult.reason`), never labels.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from nitrogen_jax.data.overlay import styles as overlay_styles
from nitrogen_jax.data.overlay.render import neutral_template


@dataclasses.dataclass(frozen=True)
class LocalizeConfig:
    """Knobs of the overlay search; the defaults hold for 360p-1080p video."""

    num_frames: int = 25
    """frames sampled evenly across the video"""
    min_inliers: int = 20
    """RANSAC inliers a frame match needs"""
    min_frames: int = 3
    """frames that must agree on the placement before the overlay counts as found"""
    ratio: float = 0.8
    """Lowe's ratio test: best match distance < ratio * second best"""
    ransac_px: float = 3.0
    """RANSAC reprojection threshold in (downscaled) frame pixels"""
    agree_px: float = 4.0
    """two frames agree when the template corners they place lie within max(agree_px, 2% of the overlay) pixels"""
    max_side: int = 960
    """frames are downscaled so that their longer side is at most this many pixels"""
    max_features: int = 3000
    """SIFT features kept per frame"""
    template_features: int = 800
    """SIFT features kept per template"""
    min_scale: float = 0.08
    """smallest plausible overlay scale (frame pixels per template pixel)"""
    max_scale: float = 8.0
    """largest plausible overlay scale"""
    max_rotation_deg: float = 20.0
    """overlays are drawn upright; a match rotated more than this is a coincidence"""
    min_visible: float = 0.6
    """fraction of the placed template that must lie inside the frame"""

    def __post_init__(self):
        if self.num_frames < 1 or self.min_inliers < 3 or self.min_frames < 1:
            raise ValueError(f"LocalizeConfig: num_frames >= 1, min_inliers >= 3 and min_frames >= 1 are needed, got "
                             f"{self.num_frames}, {self.min_inliers}, {self.min_frames}")
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

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the template frame."""
        return self.image.shape[1], self.image.shape[0]

    def corners(self) -> np.ndarray:
        w, h = self.size
        return np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)


def _sift(max_features: int) -> cv2.SIFT:
    return cv2.SIFT_create(nfeatures=max_features)


def make_template(name: str, family: str, image: np.ndarray, source: str = "builtin",
                  cfg: LocalizeConfig = LocalizeConfig()) -> Template:
    """A template from an RGB image already in the family's template frame; its SIFT features computed once.

    Templates are small (a few hundred pixels), so features are found on a 2x upsampled copy, which roughly doubles
    their count and lets a template match overlays drawn larger than itself.
    """
    if family not in overlay_styles.FAMILIES:
        raise ValueError(f"template {name!r}: family {family!r} is not one of {overlay_styles.FAMILIES}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"template {name!r}: expected an RGB uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    up = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    keypoints, descriptors = _sift(cfg.template_features).detectAndCompute(cv2.cvtColor(up, cv2.COLOR_RGB2GRAY), None)
    if descriptors is None or len(keypoints) < cfg.min_inliers:
        raise ValueError(f"template {name!r} ({source}): only {len(keypoints)} SIFT features, a match needs "
                         f"{cfg.min_inliers}; is the image the overlay itself (not a blank or tiny crop)?")
    points = np.array([k.pt for k in keypoints], np.float32) / 2.0
    return Template(name, family, image, source, points, descriptors.astype(np.float32))


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

    @classmethod
    def builtin(cls, style_names: tuple[str, ...] | None = None, cfg: LocalizeConfig = LocalizeConfig(),
                extra: tuple[Template, ...] = ()) -> TemplateLibrary:
        """The neutral render of each named style (default: every style), plus `extra` templates."""
        names = tuple(overlay_styles.STYLES) if style_names is None else style_names
        unknown = [n for n in names if n not in overlay_styles.STYLES]
        if unknown:
            raise ValueError(f"unknown overlay styles {unknown}; known: {sorted(overlay_styles.STYLES)}")
        built = [make_template(n, overlay_styles.STYLES[n].family, neutral_template(overlay_styles.STYLES[n]),
                               cfg=cfg) for n in names]
        return cls(built + list(extra), cfg)

    def __len__(self) -> int:
        return len(self.templates)


@dataclasses.dataclass(frozen=True)
class FrameMatch:
    """One template placed in one sampled frame."""

    frame: int  # position among the sampled frames
    template: int  # index in the library
    affine: np.ndarray  # float64 [2, 3], template frame -> full-resolution video frame
    inliers: int


@dataclasses.dataclass(frozen=True)
class LocalizeResult:
    """Where the overlay is, or why none was found."""

    found: bool
    reason: str  # why not found, or a one-line summary of the match
    template: Template | None = None
    affine: np.ndarray | None = None  # float64 [2, 3], template frame -> video frame
    bbox: tuple[int, int, int, int] | None = None  # [x, y, w, h] of the overlay in the video, pixels, clipped
    frames_sampled: int = 0
    frames_agreeing: int = 0
    inliers: tuple[int, ...] = ()  # per agreeing frame
    candidates: tuple[dict, ...] = ()  # per template that matched anywhere: name, family, frames, inliers

    @property
    def family(self) -> str | None:
        return None if self.template is None else self.template.family

    def summary(self) -> dict:
        out = {"found": self.found, "reason": self.reason, "frames_sampled": self.frames_sampled,
               "frames_agreeing": self.frames_agreeing, "candidates": list(self.candidates)}
        if self.found:
            out.update(template=self.template.name, family=self.family, bbox=list(self.bbox),
                       affine=np.round(self.affine, 4).tolist(), inliers_min=min(self.inliers),
                       inliers_median=float(np.median(self.inliers)), inliers_max=max(self.inliers))
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


def match_frame(frame: np.ndarray, index: int, library: TemplateLibrary) -> list[FrameMatch]:
    """Every template that RANSAC places in this RGB frame with enough inliers and a plausible shape."""
    cfg = library.cfg
    h, w = frame.shape[:2]
    s = min(1.0, cfg.max_side / max(h, w))
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if s < 1.0:
        gray = cv2.resize(gray, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    keypoints, descriptors = _sift(cfg.max_features).detectAndCompute(gray, None)
    if descriptors is None or len(keypoints) < cfg.min_inliers:
        return []
    frame_points = np.array([k.pt for k in keypoints], np.float32)
    matcher = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64})  # FLANN_INDEX_KDTREE
    pairs = matcher.knnMatch(library.descriptors, descriptors.astype(np.float32), k=2)
    query, train = [], []
    for p in pairs:
        if len(p) == 2 and p[0].distance < cfg.ratio * p[1].distance:
            query.append(p[0].queryIdx)
            train.append(p[0].trainIdx)
    query, train = np.asarray(query, np.int64), np.asarray(train, np.int64)
    out = []
    for t in np.unique(library.owner[query]) if len(query) else ():
        sel = library.owner[query] == t
        if sel.sum() < cfg.min_inliers:
            continue
        cv2.setRNGSeed(index)  # RANSAC draws from OpenCV's global generator: make it repeatable
        affine, mask = cv2.estimateAffinePartial2D(
            library.points[query[sel]], frame_points[train[sel]], method=cv2.RANSAC,
            ransacReprojThreshold=cfg.ransac_px, maxIters=2000, confidence=0.995, refineIters=10)
        if affine is None or int(mask.sum()) < cfg.min_inliers:
            continue
        affine = affine.astype(np.float64) / s  # downscaled frame -> full resolution
        template = library.templates[t]
        if _plausible(affine, template, w, h, cfg):
            out.append(FrameMatch(index, int(t), affine, int(mask.sum())))
    return out


def _corner_distance(a: np.ndarray, b: np.ndarray, corners: np.ndarray) -> float:
    return float(np.abs((corners @ a[:, :2].T + a[:, 2]) - (corners @ b[:, :2].T + b[:, 2])).max())


def vote(matches: list[FrameMatch], library: TemplateLibrary, frames_sampled: int, frame_w: int, frame_h: int,
         ) -> LocalizeResult:
    """Pick the template with the most inliers and the placement that most frames agree on."""
    cfg = library.cfg
    candidates = []
    for t in sorted({m.template for m in matches}):
        mine = [m for m in matches if m.template == t]
        candidates.append({"template": library.templates[t].name, "family": library.templates[t].family,
                           "frames": len({m.frame for m in mine}), "inliers": sum(m.inliers for m in mine)})
    candidates.sort(key=lambda c: -c["inliers"])
    if not matches:
        return LocalizeResult(False, f"no overlay found: no template reached {cfg.min_inliers} RANSAC inliers in any "
                                     f"of {frames_sampled} sampled frames", frames_sampled=frames_sampled)
    best = max(range(len(library)), key=lambda t: sum(m.inliers for m in matches if m.template == t))
    template = library.templates[best]
    # one match per frame for the winner (a frame holds one overlay); its placement is the frames' medoid
    per_frame: dict[int, FrameMatch] = {}
    for m in matches:
        if m.template == best and (m.frame not in per_frame or m.inliers > per_frame[m.frame].inliers):
            per_frame[m.frame] = m
    mine = list(per_frame.values())
    corners = template.corners()

    def agreeing(center: FrameMatch) -> list[FrameMatch]:
        width = float(np.hypot(*center.affine[:, 0])) * template.size[0]
        tol = max(cfg.agree_px, 0.02 * width)
        return [m for m in mine if _corner_distance(m.affine, center.affine, corners) <= tol]

    group = max((agreeing(m) for m in mine), key=lambda g: (len(g), sum(m.inliers for m in g)))
    if len(group) < cfg.min_frames:
        return LocalizeResult(
            False, f"no overlay found: the best template ({template.name}) was placed consistently in only "
                   f"{len(group)} of {frames_sampled} sampled frames, {cfg.min_frames} needed",
            frames_sampled=frames_sampled, frames_agreeing=len(group), candidates=tuple(candidates))
    weights = np.array([m.inliers for m in group], np.float64)
    affine = np.tensordot(weights / weights.sum(), np.stack([m.affine for m in group]), axes=1)
    placed = corners @ affine[:, :2].T + affine[:, 2]
    x0, y0 = np.clip(placed.min(0), 0, None)
    x1, y1 = np.minimum(placed.max(0), (frame_w, frame_h))
    bbox = (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1 - np.floor(x0))), int(np.ceil(y1 - np.floor(y0))))
    inliers = tuple(sorted(m.inliers for m in group))
    reason = (f"{template.name} ({template.family}) in {len(group)}/{frames_sampled} sampled frames, "
              f"median {int(np.median(inliers))} inliers")
    return LocalizeResult(True, reason, template, affine, bbox, frames_sampled, len(group), inliers, tuple(candidates))


def localize(frames: list[np.ndarray], library: TemplateLibrary) -> LocalizeResult:
    """Find the overlay in RGB frames sampled across one video (all the same size)."""
    if not frames:
        return LocalizeResult(False, "no overlay found: no frames could be decoded to search")
    h, w = frames[0].shape[:2]
    matches = [m for i, f in enumerate(frames) for m in match_frame(f, i, library)]
    return vote(matches, library, len(frames), w, h)
