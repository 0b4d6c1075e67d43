"""A contact sheet of overlay styles, neutral beside pressed, so a person can judge the renders at a glance.

python -m nitrogen_jax.data.overlay.contact_sheet --out docs/overlay-styles.png
nitrogen-jax overlay-sheet --random 12 --out docs/overlay-random-styles.png   # random looks (parser training)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from nitrogen_jax.data.overlay.render import N_BUTTONS, PadState, render_premultiplied
from nitrogen_jax.data.overlay.styles import (
    FAMILIES,
    HELDOUT_STYLES,
    STYLES,
    OverlayStyle,
    canonical_size,
    random_style,
)

# Everything pressed, sticks pushed to different corners, triggers part and fully pulled.
SHOWCASE = PadState(np.ones(N_BUTTONS, bool), np.array([1.0, -1.0]), np.array([-0.7, 0.7]), np.array([0.6, 1.0]))


def _over(premul: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    a = premul[..., 3:4].astype(np.float32) / 255
    return (premul[..., :3] + np.array(background, np.float32) * (1 - a)).astype(np.uint8)


def contact_sheet(
    styles: list[OverlayStyle] | None = None,
    *,
    columns: int = 2,
    cell_scale: float = 1.0,
    background: tuple[int, int, int] = (70, 96, 84),
) -> np.ndarray:
    """RGB uint8: one cell per style (default: every named one), its neutral render beside `SHOWCASE`, captioned
    (held-out styles marked *)."""
    styles = list(STYLES.values()) if styles is None else styles
    cells = []
    for style in styles:
        name = style.name
        pair = [_over(render_premultiplied(style, s), background) for s in (None, SHOWCASE)]
        h = max(canonical_size(f)[1] for f in FAMILIES)
        cell = np.full((h + 18, 2 * max(canonical_size(f)[0] for f in FAMILIES) + 8, 3), 255, np.uint8)
        x = 0
        for p in pair:
            cell[: p.shape[0], x : x + p.shape[1]] = p
            x += p.shape[1] + 8
        caption = f"{name}{' *' if name in HELDOUT_STYLES else ''}"
        cv2.putText(cell, caption, (2, h + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(cell)
    while len(cells) % columns:
        cells.append(np.full_like(cells[0], 255))
    rows = [np.concatenate(cells[i : i + columns], 1) for i in range(0, len(cells), columns)]
    sheet: np.ndarray = np.concatenate(rows, 0)
    if cell_scale != 1.0:
        sheet = cv2.resize(sheet, None, fx=cell_scale, fy=cell_scale, interpolation=cv2.INTER_AREA)
    return sheet


@dataclasses.dataclass(frozen=True)
class ContactSheetArgs:
    """Draw every overlay style, neutral and pressed, on one PNG."""

    out: Path = Path("docs/overlay-styles.png")
    """PNG to write."""
    columns: int = 3
    """Styles per row."""
    scale: float = 0.5
    """Resize factor of the whole sheet (keeps the PNG small)."""
    random: int = 0
    """Draw this many random looks (`styles.random_style`, the families in turn, seeded by --seed) instead of the
    named styles: what the parser's training mixes in."""
    seed: int = 0
    """Seed of the random looks."""


def run(args: ContactSheetArgs) -> int:
    if args.random < 0:
        raise ValueError(f"--random must be >= 0, got {args.random}")
    rng = np.random.default_rng(args.seed)
    styles = [random_style(FAMILIES[i % len(FAMILIES)], rng) for i in range(args.random)] or None
    sheet = contact_sheet(styles, columns=args.columns, cell_scale=args.scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{args.out}: {len(styles or STYLES)} styles, {sheet.shape[1]}x{sheet.shape[0]}")
    return 0
