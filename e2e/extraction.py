"""The extract stage: actions read off the recorded videos by the overlay pipeline, scored against the withheld
truth (per video frame: buttons right, whole rows right, stick error).

The extractor (`data.overlay.extract`) sees only the videos. Where it or its parser weights are not installed,
method 'auto' falls back to the withheld truth so the stages after it can run, and the report says so (accuracy
100% by construction). The extractor finds the game area as the frame minus black bars; our recordings put the
overlay beside the game, so the game area it reports includes the overlay's panel. The stage then sets the game
area of each chunk to the box the recording placed the game in (counted in the summary): the frames the policy
learns from must be the frames the game environment shows it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np

from nitrogen_jax.actions import STANDARD_BUTTONS
from nitrogen_jax.data.layout import METADATA_FILE, iter_chunks
from nitrogen_jax.e2e.record import RECORDING_FILE
from nitrogen_jax.e2e.settings import ExtractSettings

SCORE_FILE = "accuracy.json"


def extractor_available(parser: str | None = None) -> bool:
    """The overlay extractor and parser weights (`parser`, or the shipped ones) are installed."""
    if importlib.util.find_spec("nitrogen_jax.data.overlay.extract") is None:
        return False
    from nitrogen_jax.data.overlay.parser import WEIGHTS_DIR

    weights = Path(parser) if parser else WEIGHTS_DIR
    return weights.is_dir() and any(weights.glob("*.msgpack"))


def resolve_method(method: str, parser: str | None = None) -> str:
    if method not in ("auto", "overlay", "truth"):
        raise ValueError(f"extract method must be 'auto', 'overlay' or 'truth', got {method!r}")
    if method == "auto":
        return "overlay" if extractor_available(parser) else "truth"
    if method == "overlay" and not extractor_available(parser):
        raise FileNotFoundError(
            f"extract method 'overlay' needs nitrogen_jax.data.overlay.extract and parser weights "
            f"({parser or 'data/overlay/weights/'}: *.msgpack), not installed here"
        )
    return method


def set_game_area(labels: Path, recording: list[dict]) -> int:
    """Rewrite each chunk's bbox_game_area to where its recording placed the game; returns the chunks changed."""
    boxes = {r["video_id"]: r["bbox_game_area"] for r in recording}
    changed = 0
    for meta_path in sorted(labels.glob(f"*/*_chunk_*/{METADATA_FILE}")):
        video_id = meta_path.parent.parent.name
        if video_id not in boxes:
            continue
        meta = json.loads(meta_path.read_text())
        if meta.get("bbox_game_area") != boxes[video_id]:
            meta["bbox_game_area"] = boxes[video_id]
            meta_path.write_text(json.dumps(meta, indent=2))
            changed += 1
    return changed


def labels_by_frame(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """video_id -> {"frame": int [N], "buttons": bool [N, 17], "sticks": float [N, 4]}, rows placed at their video
    frame (start_frame + row * video_fps / label_fps)."""
    parts: dict[str, list] = {}
    for ref, pad, meta in iter_chunks(root):
        step = (meta.video_fps or meta.label_fps) / meta.label_fps
        frames = meta.start_frame + np.round(np.arange(len(pad)) * step).astype(int)
        parts.setdefault(ref.video_id, []).append((frames, pad.buttons, np.concatenate([pad.j_left, pad.j_right], 1)))
    return {
        v: {
            "frame": np.concatenate([p[0] for p in ps]),
            "buttons": np.concatenate([p[1] for p in ps]),
            "sticks": np.concatenate([p[2] for p in ps]),
        }
        for v, ps in parts.items()
    }


def score(truth_root: Path, extracted_root: Path) -> dict:
    """Extraction accuracy per video frame against the truth; frames the extraction has no row for count wrong."""
    truth, got = labels_by_frame(truth_root), labels_by_frame(extracted_root)
    rows = covered = exact = 0
    button_right, stick_err, per_button = 0, 0.0, np.zeros(len(STANDARD_BUTTONS))
    pressed, pressed_found = np.zeros(len(STANDARD_BUTTONS)), np.zeros(len(STANDARD_BUTTONS))
    for video_id, t in truth.items():
        n = len(t["frame"])
        rows += n
        g = got.get(video_id)
        if g is None:
            continue
        where = {int(f): i for i, f in enumerate(g["frame"])}
        idx = np.array([where.get(int(f), -1) for f in t["frame"]])
        have = idx >= 0
        covered += int(have.sum())
        tb, gb = t["buttons"][have], g["buttons"][idx[have]]
        right = tb == gb
        button_right += int(right.sum())
        per_button += right.sum(0)
        exact += int(right.all(1).sum())
        pressed += tb.sum(0)
        pressed_found += (tb & gb).sum(0)
        stick_err += float(np.abs(t["sticks"][have] - g["sticks"][idx[have]]).sum())
    used = [i for i in range(len(STANDARD_BUTTONS)) if pressed[i] > 0]
    return {
        "videos": len(truth),
        "videos_extracted": len(set(truth) & set(got)),
        "frames": rows,
        "frames_covered": covered / rows if rows else 0.0,
        "button_accuracy": button_right / (rows * len(STANDARD_BUTTONS)) if rows else 0.0,
        "exact_rows": exact / rows if rows else 0.0,
        "stick_mae": stick_err / (4 * covered) if covered else None,
        "press_recall": {STANDARD_BUTTONS[i]: float(pressed_found[i] / pressed[i]) for i in used},
    }


def extract_and_score(record_dir: Path, out: Path, s: ExtractSettings) -> dict:
    """Labels for every recorded video into `out/labels`, and their score against the truth in `out/accuracy.json`."""
    method = resolve_method(s.method, s.parser)
    labels = out / "labels"
    out.mkdir(parents=True, exist_ok=True)
    moved = 0
    if method == "truth":
        shutil.copytree(record_dir / "truth", labels)
    else:
        from nitrogen_jax.data.overlay import extract

        args = extract.ExtractArgs(
            video_or_dir=str(record_dir / "videos"),
            out=str(labels),
            workers=s.workers,
            parser=s.parser,
            density_threshold=0.0,  # the player idles between rallies; keep every row, as preprocess does
        )
        code = extract.run(args)
        if code:
            raise RuntimeError(f"overlay extraction of {record_dir / 'videos'} failed (exit code {code})")
        moved = set_game_area(labels, json.loads((record_dir / RECORDING_FILE).read_text()))
    result = {"method": method, "game_area_set_from_recording": moved, **score(record_dir / "truth", labels)}
    (out / SCORE_FILE).write_text(json.dumps(result, indent=1))
    return {k: result[k] for k in ("method", "frames", "button_accuracy", "exact_rows")}
