"""`nitrogen-jax extract`: gameplay videos with an input overlay -> action labels in the public layout.

Per video: sample frames across it and find the overlay (`localize`), then decode every frame once, rectify the
overlay into its template's frame and let the parser read two consecutive crops at a time (batched), clean the
result (`clean`) and write `<out>/<video_id>/<video_id>_chunk_NNNN/` chunks that `nitrogen-jax preprocess` reads
like released labels (`--videos` pointing at the same videos: the video id is the file's stem).

A folder of videos runs as an Apache Beam pipeline like `preprocess`: one video per work item, so each worker
decodes its own video and only small per-video reports are combined. Nothing is silently wrong: a corrupt video,
a video with no overlay, an overlay too small to parse, a video whose rows the density filter drops entirely: each
is a line in `extract_report.json` (and printed) with its reason, and counted.

Game area: the frame minus the black letterbox or pillarbox bars around the picture (found on the sampled frames;
the whole frame when there are none). The overlay itself is not cut out of it: its box goes to
`bbox_controller_overlay`, which preprocessing blacks out, as in the released data.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tyro
from tqdm import tqdm

from nitrogen_jax.data.beam import PipelineOptions, beam
from nitrogen_jax.data.overlay.clean import CleanConfig, CleanedLabels, clean_parsed, write_labels
from nitrogen_jax.data.overlay.localize import (
    LocalizeConfig,
    LocalizeResult,
    Template,
    TemplateLibrary,
    localize,
    screenshot_template,
)
from nitrogen_jax.data.pipeline import VIDEO_SUFFIXES
from nitrogen_jax.data.report import Report
from nitrogen_jax.data.video import VideoError, read_frames, video_fps

REPORT_FILE = "extract_report.json"


@dataclasses.dataclass(frozen=True)
class ExtractArgs:
    """Read controller inputs off videos with an input overlay, into labels in the public dataset layout."""

    video_or_dir: tyro.conf.Positional[str] = ""
    """a video file, or a folder of videos (.mp4 .mkv .webm .avi .mov; each one a work item of a Beam pipeline)"""
    out: str = "labels"
    """output folder for <video_id>/<video_id>_chunk_NNNN/ label chunks and extract_report.json"""
    template: str | None = None
    """a screenshot of your own overlay (nothing pressed, cropped to its edges), added to the template library"""
    family: str | None = None
    """the controller family of --template: xbox, ps or generic"""
    workers: int = 1
    """videos extracted at once (Beam DirectRunner processes) when VIDEO_OR_DIR is a folder"""
    parser: str | None = None
    """parser weights folder; None: the weights shipped in data/overlay/weights"""
    batch_size: int = 64
    """frames per parser call"""
    min_overlay_px: int = 80
    """overlays placed narrower than this many video pixels are reported as too small to parse"""
    num_frames: int = 25
    """frames sampled across each video to find the overlay"""
    min_inliers: int = 20
    """RANSAC inliers (distinct template features, pooled over the sampled frames) a match needs"""
    density_threshold: float = 0.5
    """drop 30 s windows with fewer active label rows than this fraction (0 keeps everything)"""
    progress: bool = True
    """show tqdm progress bars"""
    beam_args: tyro.conf.Positional[tuple[str, ...]] = ()
    """Beam pipeline options for folders, after `--` (e.g. -- --runner=DataflowRunner ...); default: DirectRunner"""


def list_videos(root: str | Path) -> list[Path]:
    """The videos to extract: the file itself, or the folder's video files (sorted)."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"extract: {root} is neither a video file nor a folder of videos")
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def sample_frames(path: str | Path, count: int) -> tuple[list[np.ndarray], int]:
    """(RGB frames at `count` positions spread evenly over the video, the container's frame count).

    Frames are reached by seeking, so a long video is not decoded twice; a frame the decoder cannot reach is left
    out (a truncated file yields fewer).
    """
    video_fps(path)  # raises VideoError naming the file when it cannot be opened
    cap = cv2.VideoCapture(str(path))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            raise VideoError(f"{path}: the container reports no frame count ({total})")
        frames = []
        for idx in np.unique(np.linspace(0, total - 1, count).round().astype(int)):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(idx))
            ok, bgr = cap.read()
            if ok:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    return frames, total


def game_area(frames: list[np.ndarray], tolerance: int = 12, share: float = 0.85) -> list[int]:
    """[x, y, w, h] of the picture inside flat bars (letterbox, pillarbox, a streamer's plain backdrop).

    A row or column belongs to a bar when most of its pixels (`share`) stay within `tolerance` of the frame corners'
    colour in every sampled frame; bars are trimmed from each edge inwards. Boxes drawn over a bar (a webcam, the
    chat) leave it a bar as long as they cover less than the rest of its row or column.
    """
    h, w = frames[0].shape[:2]
    stack = np.stack(frames).astype(np.int16)
    corners = stack[:, [0, 0, -1, -1], [0, -1, 0, -1]].reshape(-1, 3)
    backdrop = np.median(corners, axis=0)
    flat = (np.abs(stack - backdrop).max(axis=3) <= tolerance).all(axis=0)  # [H, W]
    rows, cols = flat.mean(axis=1) >= share, flat.mean(axis=0) >= share
    if rows.all() or cols.all():  # one flat picture: no bars to trust
        return [0, 0, w, h]
    y0 = int(np.argmin(rows))
    y1 = h - int(np.argmin(rows[::-1]))
    x0 = int(np.argmin(cols))
    x1 = w - int(np.argmin(cols[::-1]))
    if (x1 - x0) * (y1 - y0) < 0.25 * w * h:
        return [0, 0, w, h]
    return [x0, y0, x1 - x0, y1 - y0]


def placed_width(result: LocalizeResult) -> float:
    """Width of the overlay in video pixels (unclipped)."""
    assert result.affine is not None and result.template is not None, "placed_width needs a found overlay"
    return float(np.hypot(*result.affine[:, 0])) * result.template.size[0]


@dataclasses.dataclass
class VideoExtraction:
    """One video's outcome: its summary (the report's entry) and, when it worked, the parsed and cleaned data."""

    summary: dict[str, Any]
    found: LocalizeResult | None = None
    parsed: dict[str, np.ndarray] | None = None  # raw parser outputs per video frame
    labels: CleanedLabels | None = None


class VideoExtractor:
    """Holds the template library and the parser (built once per worker) and extracts one video at a time."""

    def __init__(self, args: ExtractArgs, parser: Any = None):
        self.args = args
        self.loc_cfg = LocalizeConfig(num_frames=args.num_frames, min_inliers=args.min_inliers)
        extra: tuple[Template, ...] = ()
        if args.template is not None:
            if args.family is None:
                raise ValueError(f"--template {args.template} needs --family (xbox, ps or generic)")
            extra = (screenshot_template(args.template, args.family, self.loc_cfg),)
        elif args.family is not None:
            raise ValueError("--family names the family of --template; give --template too")
        self.library = TemplateLibrary.builtin(cfg=self.loc_cfg, extra=extra)
        self._parser = parser
        self.clean_cfg = CleanConfig(density_threshold=args.density_threshold)

    @property
    def parser(self):
        if self._parser is None:
            from nitrogen_jax.data.overlay.parser import OverlayParser

            self._parser = OverlayParser.load(self.args.parser)
        return self._parser

    def extract(self, path: str | Path, report: Report) -> VideoExtraction:
        """Localise, parse and clean one video (nothing written); problems are recorded in `report` and the summary."""
        path = Path(path)
        t0 = time.perf_counter()
        summary: dict[str, Any] = {"video": str(path), "video_id": path.stem}

        def skip(kind: str, reason: str, found: LocalizeResult | None = None) -> VideoExtraction:
            report.skip(str(path), reason, key=kind)
            summary.update(status=kind, reason=reason, seconds=round(time.perf_counter() - t0, 3))
            return VideoExtraction(summary, found)

        try:
            fps = video_fps(path)
            sampled, total = sample_frames(path, self.args.num_frames)
        except VideoError as e:
            return skip("corrupt_video", str(e))
        if not sampled:
            return skip("corrupt_video", f"{path}: no frame could be decoded")
        h, w = sampled[0].shape[:2]
        summary.update(fps=fps, frames_reported=total, width=w, height=h)
        found = localize(sampled, self.library)
        summary["localize"] = found.summary()
        t_localize = time.perf_counter() - t0
        if not found.found:
            return skip("no_overlay", f"{path}: {found.reason}", found)
        assert found.template is not None  # localize sets it when found
        if placed_width(found) < self.args.min_overlay_px:
            return skip(
                "overlay_too_small",
                f"{path}: overlay too small to parse: {found.template.name} placed "
                f"{placed_width(found):.0f} px wide, at least {self.args.min_overlay_px} "
                "px needed (--min-overlay-px)",
                found,
            )
        parsed = self._parse_video(path, found, total)
        t_parse = time.perf_counter() - t0 - t_localize
        n = len(parsed["buttons"])
        if n < 2:
            return skip("corrupt_video", f"{path}: only {n} frames decoded", found)
        if n < total:
            report.count("frames_missing", total - n)
            summary["frames_missing"] = total - n
        labels = clean_parsed(parsed["buttons"], parsed["j_left"], parsed["j_right"], fps, self.clean_cfg)
        summary["confidence"] = confidence(found, parsed)
        summary["calibration"] = {k: c.to_json() for k, c in labels.calibration.items()}
        summary.update(
            frames=n,
            label_rows=len(labels.keep),
            label_rows_kept=int(labels.keep.sum()),
            bbox_game_area=game_area(sampled),
        )
        if not labels.keep.any():
            return skip(
                "no_active_rows",
                f"{path}: the action-density filter dropped every row (under "
                f"{self.args.density_threshold:.0%} active in every window)",
                found,
            )
        seconds = time.perf_counter() - t0
        summary.update(
            status="ok",
            reason=found.reason,
            seconds=round(seconds, 3),
            seconds_localize=round(t_localize, 3),
            seconds_parse=round(t_parse, 3),
            frames_per_second=round(n / seconds, 1),
        )
        return VideoExtraction(summary, found, parsed, labels)

    def __call__(self, path: str | Path, report: Report) -> dict:
        """Extract one video and write its label chunks into `args.out`; returns its summary."""
        result = self.extract(path, report)
        s = result.summary
        if result.labels is not None:
            assert result.found is not None and result.found.bbox is not None  # labels only come from a found overlay
            dirs = write_labels(
                self.args.out,
                s["video_id"],
                result.labels,
                video_url=str(Path(path).resolve()),
                bbox_controller_overlay=list(result.found.bbox),
                bbox_game_area=s["bbox_game_area"],
                resolution=(s["height"], s["width"]),
            )
            s["chunks"] = [str(d) for d in dirs]
            report.count("videos_extracted")
            report.count("frames", s["frames"])
            report.count("label_rows_kept", s["label_rows_kept"])
        return s

    def _parse_video(self, path: Path, found: LocalizeResult, total: int) -> dict[str, np.ndarray]:
        """Every frame rectified and parsed, two consecutive crops at a time; outputs per frame."""
        from nitrogen_jax.data.overlay.parser import rectify

        assert found.template is not None and found.affine is not None  # only found overlays are parsed
        family, affine, bs = found.template.family, found.affine, self.args.batch_size
        template = rectify(found.template.image, np.array([[1.0, 0, 0], [0, 1.0, 0]]), family)
        outputs: dict[str, list[np.ndarray]] = {"buttons": [], "j_left": [], "j_right": [], "triggers": []}
        previous: np.ndarray | None = None
        batch: list[np.ndarray] = []

        def flush() -> None:
            nonlocal previous
            cur = np.stack(batch)
            prev = np.concatenate([cur[:1] if previous is None else previous[None], cur[:-1]])
            previous = cur[-1]
            k = len(cur)
            if k < bs:  # a short last batch is padded to the one shape the parser has compiled
                fill = np.repeat(cur[-1:], bs - k, axis=0)
                cur, prev = np.concatenate([cur, fill]), np.concatenate([prev, fill])
            pads = self.parser.parse(prev, cur, template)
            for key in outputs:
                outputs[key].append(np.asarray(getattr(pads, key))[:k])
            batch.clear()

        bar = tqdm(total=total, desc=f"parse {path.name}", unit="frame", disable=not self.args.progress, leave=False)
        for _, frame in read_frames(path, range(total)):
            batch.append(rectify(frame, affine, family))
            if len(batch) == bs:
                flush()
                bar.update(bs)
        if batch:
            bar.update(len(batch))
            flush()
        bar.close()
        return {
            k: np.concatenate(v) if v else np.zeros((0, 17 if k == "buttons" else 2), np.float32)
            for k, v in outputs.items()
        }


def confidence(found: LocalizeResult, parsed: dict[str, np.ndarray]) -> dict:
    """How much to trust a video's labels: match strength, and how steady the parser reads consecutive frames.

    Real inputs change a few times a second, so consecutive frames mostly agree; a parser guessing on an
    unreadable overlay flips buttons and jitters sticks frame to frame.
    """
    probs = parsed["buttons"]
    sticks = np.concatenate([parsed["j_left"], parsed["j_right"]], axis=1)
    same = (np.diff(probs > 0.5, axis=0) == 0).all(axis=1) if len(probs) > 1 else np.ones(1, bool)
    return {
        "inliers": found.inliers,
        "frames_with_inliers": len(found.inliers_per_frame),
        "frames_searched": found.frames_visited,
        "button_agreement_consecutive": round(float(same.mean()), 4),
        "stick_change_consecutive": round(float(np.abs(np.diff(sticks, axis=0)).mean()) if len(sticks) > 1 else 0.0, 4),
        "button_decisiveness": round(float(np.abs(2 * probs - 1).mean()), 4),
    }


def write_report(out: str | Path, summaries: list[dict], report: Report) -> dict:
    """`<out>/extract_report.json`: counts, every skipped video with its reason, and each video's summary."""
    body = {
        "counts": dict(sorted(report.counts.items())),
        "skipped": sorted(report.skipped, key=lambda s: (s["kind"], s["input"])),
        "videos": sorted(summaries, key=lambda s: s["video"]),
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / REPORT_FILE).write_text(json.dumps(body, indent=2))
    return body


def _run_local(args: ExtractArgs, videos: list[Path], parser: Any) -> tuple[list[dict], Report]:
    extractor, report, summaries = VideoExtractor(args, parser), Report(), []
    for path in videos:
        report.count("videos")
        summaries.append(extractor(path, report))
    return summaries, report


class ExtractVideo(beam.DoFn):
    """The Beam work item: one video in, (summary, Report) out; the extractor is built once per worker."""

    def __init__(self, args: ExtractArgs):
        self.args = args
        self.extractor: VideoExtractor | None = None  # built in setup(), once per worker

    def setup(self) -> None:
        self.extractor = VideoExtractor(self.args)

    def process(self, path: str):
        report = Report()
        report.count("videos")
        assert self.extractor is not None, "setup() builds the extractor before process()"
        yield self.extractor(path, report), report


def _run_beam(args: ExtractArgs, videos: list[Path]) -> tuple[list[dict], Report]:
    """One work item per video; DirectRunner processes (`workers`) unless `beam_args` name another runner."""
    options = list(args.beam_args) or ["--runner=DirectRunner"] + (
        [f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing"] if args.workers > 1 else []
    )
    with beam.Pipeline(options=PipelineOptions(options)) as p:
        _ = (
            p
            | "ListVideos" >> beam.Create([str(v) for v in videos])
            | "Extract" >> beam.ParDo(ExtractVideo(args))
            | "Collect" >> beam.combiners.ToList()
            | "Report" >> beam.Map(lambda items: _write_collected(args.out, items))
        )
    body = json.loads((Path(args.out) / REPORT_FILE).read_text())
    report = Report()
    for kind, n in body["counts"].items():
        report.count(kind, n)
    report.skipped = body["skipped"]
    return body["videos"], report


def _write_collected(out: str, items: list) -> dict:
    report = Report()
    for _, r in items:
        report = report.merge(r)
    return write_report(out, [s for s, _ in items], report)


def run(args: ExtractArgs, parser: Any = None) -> int:
    """Extract every video; prints a line per video and writes the report. 0 when at least one video gave labels.

    `parser`: an already loaded OverlayParser for a single video (tests, benchmarks); default: `args.parser`.
    """
    if not args.video_or_dir:
        raise ValueError("extract: give a video file or a folder of videos (VIDEO_OR_DIR)")
    videos = list_videos(args.video_or_dir)
    if not videos:
        raise FileNotFoundError(f"extract: no videos ({', '.join(VIDEO_SUFFIXES)}) in {args.video_or_dir}")
    if Path(args.video_or_dir).is_dir():
        summaries, report = _run_beam(args, videos)
    else:
        summaries, report = _run_local(args, videos, parser)
        write_report(args.out, summaries, report)
    for s in sorted(summaries, key=lambda s: s["video"]):
        if s["status"] == "ok":
            c = s["confidence"]
            print(
                f"ok    {s['video']}: {s['reason']}; {s['frames']} frames -> {len(s['chunks'])} chunks, "
                f"consecutive button agreement {c['button_agreement_consecutive']:.3f}"
            )
        else:
            print(f"SKIP  ({s['status']}) {s['reason']}")
    print(
        f"{report.counts.get('videos_extracted', 0)} of {len(videos)} videos extracted; report: "
        f"{Path(args.out) / REPORT_FILE}"
    )
    return 0 if report.counts.get("videos_extracted", 0) else 1
