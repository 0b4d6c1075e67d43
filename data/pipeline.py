"""The preprocessing as an Apache Beam pipeline: label chunks + videos -> TFRecord shards + index + manifest.

    label sources (chunk folders, tar shards) --read--> (video_id, chunk) --GroupByKey--> per video:
        decode the video once, write `<video_id>-NNNNN.tfrecord` (+ .index) --> Report --combine--> manifest.json

Heavy bytes (frames, JPEGs) never cross a shuffle: each video's worker writes its own shards, and only label
chunks (kilobytes) and reports are grouped. Locally it runs on Beam's DirectRunner; the same pipeline runs on
Dataflow, Flink or Spark by passing their pipeline options (README, section Data). Inputs and outputs are
file-system paths, so remote workers need them on a shared mount (Filestore, gcsfuse, NFS).
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
from pathlib import Path

from nitrogen_jax.actions import get_layout
from nitrogen_jax.data.beam import PipelineOptions, beam
from nitrogen_jax.data.layout import ChunkRef, LabelError, find_chunks, read_chunk
from nitrogen_jax.data.preprocess import LabelChunk, PreprocessConfig, shard_name, video_samples
from nitrogen_jax.data.report import Report
from nitrogen_jax.data.tfrecord import TFRecordWriter, index_path
from nitrogen_jax.data.video import VideoError, video_fps

MANIFEST = "manifest.json"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def video_map(videos: str | Path) -> dict[str, str]:
    """video_id -> local file: a folder of `<video_id>.<ext>` files, or a JSON file {video_id: path}."""
    videos = Path(videos)
    if videos.is_file():
        mapping = json.loads(videos.read_text())
        if not isinstance(mapping, dict):
            raise ValueError(f"{videos}: expected a JSON object {{video_id: path}}")
        return {str(k): str(Path(v) if Path(v).is_absolute() else videos.parent / v) for k, v in mapping.items()}
    if not videos.is_dir():
        raise FileNotFoundError(f"videos {videos}: neither a folder of videos nor a JSON mapping")
    return {p.stem: str(p) for p in sorted(videos.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}


def list_label_sources(roots: list[str | Path], strict: bool) -> tuple[list[ChunkRef], Report]:
    """Every chunk under the roots, and a Report of the tar shards that could not be read (fatal when strict)."""
    unreadable: list | None = None if strict else []
    refs = [ref for root in roots for ref in find_chunks(root, unreadable)]
    report = Report()
    for path, reason in unreadable or ():
        report.skip(path, reason, key="label_sources_skipped")
    return refs, report


def read_label_chunk(ref: ChunkRef, strict: bool):
    """(video_id, LabelChunk) or (video_id, Report of the skip)."""
    try:
        pad, meta = read_chunk(ref)
    except (LabelError, OSError, tarfile.TarError) as e:
        if strict:
            raise
        report = Report()
        report.skip(ref.name, str(e), key="chunks_skipped")
        return ref.video_id, report
    return ref.video_id, LabelChunk(ref.name, ref.index, pad, meta)


class WriteVideoShards(beam.DoFn):
    """One video's chunks -> its shards on disk; emits the video's Report."""

    def __init__(self, out_dir: str, videos: dict[str, str], cfg: PreprocessConfig):
        self.out_dir, self.videos, self.cfg = out_dir, videos, cfg

    def process(self, element):
        video_id, items = element
        items = list(items)
        report = Report()
        for r in (i for i in items if isinstance(i, Report)):
            report = report.merge(r)
        chunks = [i for i in items if isinstance(i, LabelChunk)]
        report.count("videos")
        if chunks:
            self._write(video_id, chunks, report)
        yield report

    def _write(self, video_id: str, chunks: list[LabelChunk], report: Report) -> None:
        cfg = self.cfg
        path = self.videos.get(video_id)
        try:
            if path is None:
                raise VideoError(f"no local video for video_id {video_id!r} (url {chunks[0].meta.video_url!r})")
            fps = video_fps(path)
        except VideoError as e:
            if cfg.strict:
                raise
            report.skip(path or video_id, str(e), key="videos_skipped")
            report.count("chunks_of_skipped_videos", len(chunks))
            return
        samples = video_samples(video_id, chunks, path, fps, cfg, report)
        part = 0
        with contextlib.ExitStack() as open_shard:  # a video failing mid-shard leaves no open stream behind
            writer, name, stream = None, "", None
            for data in samples:
                if writer is None:
                    name = shard_name(video_id, part)
                    stream = open_shard.enter_context(open(os.path.join(self.out_dir, name + ".tmp"), "wb"))
                    writer = TFRecordWriter(stream)
                writer.write(data)
                if len(writer.index) == cfg.records_per_shard:
                    self._finish(name, stream, writer, report)
                    part, writer = part + 1, None
            if writer is not None:
                self._finish(name, stream, writer, report)

    def _finish(self, name: str, stream, writer: TFRecordWriter, report: Report) -> None:
        """Index first, then the shard renamed into place, so a listed shard always has its index."""
        stream.close()
        final = os.path.join(self.out_dir, name)
        index_path(final).write_bytes(writer.index_bytes())
        os.replace(final + ".tmp", final)
        report.shards.append({"file": name, "records": len(writer.index)})


class MergeReports(beam.CombineFn):
    def create_accumulator(self):
        return Report()

    def add_input(self, acc, report):
        return acc.merge(report)

    def merge_accumulators(self, accs):
        out = Report()
        for a in accs:
            out = out.merge(a)
        return out

    def extract_output(self, acc):
        return acc


def manifest(report: Report, cfg: PreprocessConfig, inputs: dict) -> dict:
    layout = get_layout(cfg.layout)
    c = report.counts
    rows = c.get("label_rows", 0)
    return {
        "format": "nitrogen-jax tfrecord v1",
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "action_dim": layout.dim,
        "action_names": list(layout.button_names) + ["j_left_x", "j_left_y", "j_right_x", "j_right_y"],
        "inputs": inputs,
        "counts": dict(sorted(c.items())),
        "kept_fraction": round(c.get("label_rows_kept", 0) / rows, 6) if rows else 0.0,
        "shards": sorted(report.shards, key=lambda s: s["file"]),
        "action_stats": report.action_stats(
            tuple(layout.button_names) + ("j_left_x", "j_left_y", "j_right_x", "j_right_y")
        ),
        "skipped": sorted(report.skipped, key=lambda s: (s["kind"], s["input"])),
    }


def write_manifest(report: Report, out_dir: str, cfg: PreprocessConfig, inputs: dict) -> dict:
    m = manifest(report, cfg, inputs)
    Path(out_dir, MANIFEST).write_text(json.dumps(m, indent=2))
    return m


def run_preprocess(
    labels: list[str | Path],
    videos: str | Path | dict,
    out_dir: str | Path,
    cfg: PreprocessConfig | None = None,
    beam_args: list[str] | None = None,
) -> dict:
    """Run the pipeline (DirectRunner unless `beam_args` say otherwise); returns the manifest it wrote."""
    cfg = cfg or PreprocessConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vmap = videos if isinstance(videos, dict) else video_map(videos)
    refs, listing = list_label_sources(labels, cfg.strict)
    inputs = {"labels": [str(p) for p in labels], "chunks_found": len(refs), "videos_found": len(vmap)}
    if not refs:
        raise FileNotFoundError(f"no label chunks (<video_id>/<video_id>_chunk_NNNN/metadata.json) under {labels}")
    options = PipelineOptions(beam_args or ["--runner=DirectRunner"])
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | "ListChunks" >> beam.Create(refs)
            | "ReadLabels" >> beam.Map(read_label_chunk, cfg.strict)
            | "ByVideo" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(WriteVideoShards(str(out_dir), vmap, cfg))
            | "Merge" >> beam.CombineGlobally(MergeReports())
            | "Manifest" >> beam.Map(lambda r: write_manifest(r.merge(listing), str(out_dir), cfg, inputs))
        )
    return json.loads((out_dir / MANIFEST).read_text())
