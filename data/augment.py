"""Training-frame augmentations as Grain transforms (per-record RNG from the sampler, so resume replays them).

The four augmentations of the issue are fused into two passes over the pixels, because at 256x256 each full
pass costs about as much as the JPEG decode and the loader must feed 800 samples/s per core:
- `RandomPhotometric`: brightness x[0.8, 1.2] and contrast x[0.85, 1.15] (about the image mean) as one 256-entry
  lookup table;
- `RandomGeometric`: rotation by +-5 degrees and a random crop (side 85-100%) scaled back to full size as one
  inverse affine warp.

Those two cost about as much CPU as the decode itself (a loader at ~55% of the bare decode rate), so training
moves the pixel work to the accelerator: `RandomAugmentParams` only draws the same six numbers per record (same
RNG, same order: rotation, crop side, crop centre x/y, brightness, contrast) into `batch["augment"]`, and
`nitrogen_jax.data.device.augment_on_device` applies them inside the jitted train step.
"""

from __future__ import annotations

import dataclasses

import cv2
import grain
import numpy as np

AUGMENT_KEY = "augment"  # float32 [6]: theta (radians), crop side s, crop centre cx, cy, brightness, contrast


@dataclasses.dataclass(frozen=True)
class RandomAugmentParams(grain.transforms.RandomMap):
    """Draws what RandomGeometric then RandomPhotometric would draw from the record's RNG, without touching pixels."""

    max_degrees: float = 5.0
    min_crop: float = 0.85
    brightness: float = 0.2
    contrast: float = 0.15

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        # One draw of six uniforms: rng.uniform(a, b) is a + (b - a) * rng.random(), so these are the numbers the
        # host transforms' six scalar calls give, at a sixth of the call overhead.
        h, w = element["frames"].shape[:2]
        u = rng.random(6)
        theta = np.deg2rad(self.max_degrees * (2 * u[0] - 1))
        s = self.min_crop + (1 - self.min_crop) * u[1]
        cx, cy = w * s / 2 + (w - w * s) * u[2], h * s / 2 + (h - h * s) * u[3]
        b, c = 1 + self.brightness * (2 * u[4] - 1), 1 + self.contrast * (2 * u[5] - 1)
        return {**element, AUGMENT_KEY: np.array([theta, s, cx, cy, b, c], np.float32)}


def geometric_params(
    rng: np.random.Generator, h: int, w: int, max_degrees: float, min_crop: float
) -> tuple[float, float, float, float]:
    """(rotation in radians, crop side as a fraction, crop centre x, y) of one record."""
    theta = np.deg2rad(rng.uniform(-max_degrees, max_degrees))
    s = rng.uniform(min_crop, 1.0)
    cx = rng.uniform(w * s / 2, w - w * s / 2)
    cy = rng.uniform(h * s / 2, h - h * s / 2)
    return float(theta), float(s), float(cx), float(cy)


@dataclasses.dataclass(frozen=True)
class RandomPhotometric(grain.transforms.RandomMap):
    brightness: float = 0.2
    contrast: float = 0.15

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        b = rng.uniform(1 - self.brightness, 1 + self.brightness)
        c = rng.uniform(1 - self.contrast, 1 + self.contrast)
        frame = element["frames"]
        mean = float(np.mean(cv2.mean(frame)[:3]))
        table = np.clip(b * (c * (np.arange(256, dtype=np.float32) - mean) + mean), 0, 255).astype(np.uint8)
        return {**element, "frames": cv2.LUT(frame, table)}


@dataclasses.dataclass(frozen=True)
class RandomGeometric(grain.transforms.RandomMap):
    max_degrees: float = 5.0
    min_crop: float = 0.85

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        frame = element["frames"]
        h, w = frame.shape[:2]
        theta, s, cx, cy = geometric_params(rng, h, w, self.max_degrees, self.min_crop)
        # Output pixel p maps to source c + s * R(theta) (p - centre): crop window of side s, rotated about its centre.
        a = s * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        m = np.concatenate([a, (np.array([cx, cy]) - a @ np.array([w / 2, h / 2]))[:, None]], axis=1)
        # OpenCV's vectorised bilinear warp covers 4-channel images only: via RGBA it gives the same pixels in
        # about half the time of the 3-channel path, conversions included (220 vs 405 us at 256x256 here).
        rgba = cv2.cvtColor(frame, cv2.COLOR_RGB2RGBA)
        out = cv2.warpAffine(
            rgba, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101
        )
        return {**element, "frames": cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)}
