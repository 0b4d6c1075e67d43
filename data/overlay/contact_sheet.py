"""A contact sheet of overlay styles, neutral beside pressed, so a person can judge the renders at a glance.

python -m nitrogen_jax.data.overlay.contact_sheet --out docs/overlay-styles.png
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from nitrogen_jax.data.overlay.render import N_BUTTONS, PadState, render_premultiplied
from nitrogen_jax.data.overlay.styles import FAMILIES, HELDOUT_STYLES, STYLES, canonical_size

# Everything pressed, sticks pushed to different corners, triggers part and fully pulled.
SHOWCASE = PadState(np.ones(N_BUTTONS, bool), np.array([1.0, -1.0]), np.array([-0.7, 0.7]), np.array([0.6, 1.0]))


def _over(premul: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    a = premul[..., 3:4].astype(np.float32) / 255
    return (premul[..., :3] + np.array(background, np.float32) * (1 - a)).astype(np.uint8)


def contact_sheet(
    names: list[str] | None = None,
    *,
    columns: int = 2,
    cell_scale: float = 1.0,
    background: tuple[int, int, int] = (70, 96, 84),
) -> np.ndarray:
    """RGB uint8: one cell per style, its neutral render beside `SHOWCASE`, captioned (held-out styles marked *)."""
    names = list(STYLES) if names is None else names
    cells = []
    for name in names:
        style = STYLES[name]
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
    sheet = np.concatenate(rows, 0)
    if cell_scale != 1.0:
        sheet = cv2.resize(sheet, None, fx=cell_scale, fy=cell_scale, interpolation=cv2.INTER_AREA)
    return sheet


@dataclasses.dataclass(frozen=True)
class ContactSheetArgs:
    out: Path = Path("docs/overlay-styles.png")
    """PNG to write."""
    columns: int = 3
    """Styles per row."""
    scale: float = 0.5
    """Resize factor of the whole sheet (keeps the PNG small)."""


def run(args: ContactSheetArgs) -> int:
    sheet = contact_sheet(columns=args.columns, cell_scale=args.scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{args.out}: {len(STYLES)} styles, {sheet.shape[1]}x{sheet.shape[0]}")
    return 0


if __name__ == "__main__":
    import tyro

    raise SystemExit(run(tyro.cli(ContactSheetArgs)))
