"""The preprocessing as an Apache Beam pipeline: label chunks + videos -> TFRecord shards + index + manifest.

    label roots --MatchAll--> files: chunk folders' metadata.json, tar shards (each streamed once)
        --> (video_id, chunk) --CoGroupByKey with (video_id, video path)--> per video: timeline, density filter,
        cut into time segments --Reshuffle--> per segment: seek, decode its range, write shards (+ .index)
    reports of every stage --CombineGlobally--> manifest.json, written by the pipeline

Nothing scales with the dataset on the launcher: inputs are found by Beam's own file matching on the workers (a
handful of patterns in the job graph, not one element per chunk), and every read and write goes through Beam's
`FileSystems` (`pipeline_io.py`), so `gs://` and `s3://` paths work on Dataflow, Flink or Spark as local ones do on the
DirectRunner. Heavy bytes (frames, JPEGs) never cross a shuffle: only label chunks (kilobytes), segments (a slice
of encoded actions) and reports are grouped. A segment is a bounded work item: it seeks to its start time and
writes its shards under temporary names moved into place, so a retried segment restarts cleanly.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from nitrogen_jax.actions import get_layout
from nitrogen_jax.data import pipeline_io as storage
from nitrogen_jax.data.beam import PipelineOptions, beam
from nitrogen_jax.data.layout import (
    LABELS_FILE,
    METADATA_FILE,
    ChunkRef,
    LabelError,
    _chunk_ref,
    find_chunks,
    parse_labels,
    read_tar_chunks,
)
from nitrogen_jax.data.layout import ChunkMetadata as _Meta
from nitrogen_jax.data.preprocess import (
    LabelChunk,
    PreprocessConfig,
    Segment,
    plan_segments,
    segment_samples,
    shard_name,
)
from nitrogen_jax.data.report import Report
from nitrogen_jax.data.tfrecord import INDEX_SUFFIX, TFRecordWriter

MANIFEST = "manifest.json"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
REPORTS = "reports"


def video_map(videos: str | Path) -> dict[str, str]:
    """video_id -> video path: a folder of `<video_id>.<ext>` files, or a JSON file {video_id: path} (relative
    paths are relative to the JSON file). Local or object-store paths."""
    videos = str(videos)
    if videos.endswith(".json"):
        mapping = json.loads(storage.read_bytes(videos))
        if not isinstance(mapping, dict):
            raise ValueError(f"{videos}: expected a JSON object {{video_id: path}}")
        here = posixpath.dirname(videos)
        return {
            str(k): str(v) if storage.is_remote(v) or posixpath.isabs(v) else storage.join(here, v)
            for k, v in mapping.items()
        }
    if not storage.is_remote(videos) and not Path(videos).is_dir():
        raise FileNotFoundError(f"videos {videos}: neither a folder of videos nor a JSON mapping")
    found = storage.list_files(storage.join(videos, "*"))
    return {_stem(p): p for p in found if posixpath.splitext(p)[1].lower() in VIDEO_SUFFIXES}


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]


def label_pattern(root: str | Path) -> str:
    """The Beam glob that finds a root's label files: the root itself when it is one file (a tar shard), else
    every file below it (`**` crosses folders on every Beam filesystem)."""
    root = str(root)
    if not storage.is_remote(root) and not Path(root).exists():
        raise FileNotFoundError(f"label root {root} does not exist")
    return root if storage.is_file(root) else storage.join(root.rstrip("/"), "**")


def list_label_sources(roots: list[str | Path], strict: bool) -> tuple[list[ChunkRef], Report]:
    """Every chunk under local roots and a Report of unreadable tar shards (the old launcher-side listing; the
    pipeline matches files on its workers instead)."""
    unreadable: list | None = None if strict else []
    refs = [ref for root in roots for ref in find_chunks(root, unreadable)]
    report = Report()
    for path, reason in unreadable or ():
        report.skip(path, reason, key="label_sources_skipped")
    return refs, report


def _skipped(name: str, e: Exception, key: str) -> Report:
    report = Report()
    report.skip(name, str(e), key=key)
    return report


def read_label_file(path: str, strict: bool):
    """One matched file -> (video_id, LabelChunk | Report of its skip) items, and a tagged Report for a tar shard
    that could not be read. A chunk folder is read at its metadata.json; other files are ignored."""
    if path.endswith("/" + METADATA_FILE) or path.endswith("\\" + METADATA_FILE):
        ref = _chunk_ref(path.replace("\\", "/"), posixpath.dirname(path), in_tar=False)
        if ref is None:
            return
        labels_name, meta_name = storage.join(ref.path, LABELS_FILE), path
        try:
            try:
                labels = storage.read_bytes(labels_name)
            except OSError:
                raise LabelError(f"{labels_name}: missing") from None
            try:
                raw = json.loads(storage.read_bytes(meta_name))
            except json.JSONDecodeError as e:
                raise LabelError(f"{meta_name}: not valid JSON ({e})") from None
            yield (
                ref.video_id,
                LabelChunk(ref.name, ref.index, parse_labels(labels, labels_name), _Meta.from_json(raw, meta_name)),
            )
        except LabelError as e:
            if strict:
                raise
            yield ref.video_id, _skipped(ref.name, e, "chunks_skipped")
    elif ".tar" in posixpath.basename(path):
        try:
            with storage.open_read(path) as stream:
                for ref, got in read_tar_chunks(stream, path):
                    if isinstance(got, LabelError):
                        if strict:
                            raise got
                        yield ref.video_id, _skipped(ref.name, got, "chunks_skipped")
                    else:
                        yield ref.video_id, LabelChunk(ref.name, ref.index, *got)
        except LabelError as e:
            if strict:
                raise
            yield beam.pvalue.TaggedOutput(REPORTS, _skipped(path, e, "label_sources_skipped"))


class PlanVideo(beam.DoFn):
    """One video's chunks and its video path -> its time segments; the video's Report goes to REPORTS."""

    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg

    def process(self, element):
        from nitrogen_jax.data.video import VideoError, probe_video

        video_id, joined = element
        items, paths = list(joined["labels"]), list(joined["videos"])
        report = Report()
        report.count("videos_found", len(paths[:1]))
        if not items:
            report.count("videos_without_labels")
            yield beam.pvalue.TaggedOutput(REPORTS, report)
            return
        report.count("videos")
        for r in (i for i in items if isinstance(i, Report)):
            report = report.merge(r)
        chunks = [i for i in items if isinstance(i, LabelChunk)]
        report.count("chunks_found", len(items))
        segments: list[Segment] = []
        if chunks:
            path = paths[0] if paths else None
            try:
                if path is None:
                    raise VideoError(f"no local video for video_id {video_id!r} (url {chunks[0].meta.video_url!r})")
                info = probe_video(path)
            except VideoError as e:
                if self.cfg.strict:
                    raise
                report.skip(path or video_id, str(e), key="videos_skipped")
                report.count("chunks_of_skipped_videos", len(chunks))
            else:
                size = (info.width, info.height) if info.width and info.height else None
                segments = plan_segments(video_id, chunks, path, info.fps, self.cfg, report, size)
        report.count("segments", len(segments))
        yield beam.pvalue.TaggedOutput(REPORTS, report)
        yield from segments


class WriteSegmentShards(beam.DoFn):
    """One segment -> its shards (each closed at records_per_shard records or max_shard_mb); emits its Report."""

    def __init__(self, out_dir: str, cfg: PreprocessConfig):
        self.out_dir, self.cfg = out_dir, cfg

    def process(self, seg: Segment):
        report = Report()
        limit = self.cfg.max_shard_mb * 2**20
        part, writer, size, batch = 0, None, 0, []
        for data in segment_samples(seg, self.cfg, report):
            batch.append(data)
            size += len(data) + 16
            if len(batch) == self.cfg.records_per_shard or size >= limit:
                self._write(shard_name(seg.video_id, part, seg.index), batch, report)
                part, size, batch = part + 1, 0, []
        if batch:
            self._write(shard_name(seg.video_id, part, seg.index), batch, report)
        del writer
        yield report

    def _write(self, name: str, records: list[bytes], report: Report) -> None:
        """Index first, then the shard moved into place, so a listed shard always has its index."""
        final = storage.join(self.out_dir, name)
        with storage.create_then_rename(final) as stream:
            writer = TFRecordWriter(stream)
            for r in records:
                writer.write(r)
            storage.write_bytes(final + INDEX_SUFFIX, writer.index_bytes())
        report.shards.append({"file": name, "records": len(writer.index)})


def absorb(acc: Report, r: Report) -> Report:
    """`acc` with `r` added in place: lists are extended, not copied, so combining N reports is linear in N (with
    Report.merge every input would copy the whole shard list so far)."""
    stats = Report(
        action_sum=acc.action_sum,
        action_sumsq=acc.action_sumsq,
        action_min=acc.action_min,
        action_max=acc.action_max,
        action_steps=acc.action_steps,
    ).merge(r)
    acc.counts.update(r.counts)
    acc.skipped.extend(r.skipped)
    acc.shards.extend(r.shards)
    acc.action_sum, acc.action_sumsq, acc.action_min, acc.action_max, acc.action_steps = (
        stats.action_sum,
        stats.action_sumsq,
        stats.action_min,
        stats.action_max,
        stats.action_steps,
    )
    return acc


class MergeReports(beam.CombineFn):
    def create_accumulator(self):
        return Report()

    def add_input(self, acc, report):
        return absorb(acc, report)

    def merge_accumulators(self, accs):
        out = Report()
        for a in accs:
            absorb(out, a)
        return out

    def extract_output(self, acc):
        return acc


def manifest(report: Report, cfg: PreprocessConfig, inputs: dict) -> dict:
    layout = get_layout(cfg.layout)
    c = report.counts
    rows = c.get("label_rows", 0)
    names = (*layout.button_names, "j_left_x", "j_left_y", "j_right_x", "j_right_y")
    return {
        "format": "nitrogen-jax tfrecord v1",
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "action_dim": layout.dim,
        "action_names": list(names),
        "inputs": {**inputs, "chunks_found": c.get("chunks_found", 0), "videos_found": c.get("videos_found", 0)},
        "counts": dict(sorted(c.items())),
        "kept_fraction": round(c.get("label_rows_kept", 0) / rows, 6) if rows else 0.0,
        "shards": sorted(report.shards, key=lambda s: s["file"]),
        "action_stats": report.action_stats(names),
        "skipped": sorted(report.skipped, key=lambda s: (s["kind"], s["input"])),
    }


def write_manifest(report: Report, out_dir: str, cfg: PreprocessConfig, inputs: dict) -> dict:
    m = manifest(report, cfg, inputs)
    storage.write_bytes(storage.join(str(out_dir), MANIFEST), json.dumps(m, indent=2).encode())
    return m


def _video_entries(p, videos: str | Path | dict):
    """(video_id, path) as a PCollection, found on the workers for a folder or a JSON file."""
    if isinstance(videos, dict):
        return p | "Videos" >> beam.Create(sorted((str(k), str(v)) for k, v in videos.items()))
    return p | "VideoSource" >> beam.Create([str(videos)]) | "Videos" >> beam.FlatMap(lambda v: video_map(v).items())


def build_pipeline(
    p, labels: list[str | Path], videos: str | Path | dict, out_dir: str, cfg: PreprocessConfig, inputs: dict
):
    """The preprocessing graph on pipeline `p`; its size does not depend on the number of chunks or videos."""
    from apache_beam.io import fileio

    files = (
        p
        | "LabelPatterns" >> beam.Create([label_pattern(r) for r in labels])
        | "MatchLabels" >> fileio.MatchAll()
        | "Paths" >> beam.Map(lambda m: m.path)
        | "SpreadFiles" >> beam.Reshuffle()
    )
    read = files | "ReadLabels" >> beam.FlatMap(read_label_file, cfg.strict).with_outputs(REPORTS, main="chunks")
    planned = (
        {"labels": read.chunks, "videos": _video_entries(p, videos)}
        | "ByVideo" >> beam.CoGroupByKey()
        | "Plan" >> beam.ParDo(PlanVideo(cfg)).with_outputs(REPORTS, main="segments")
    )
    written = (
        planned.segments
        | "SpreadSegments" >> beam.Reshuffle()
        | "WriteShards" >> beam.ParDo(WriteSegmentShards(out_dir, cfg))
    )
    return (
        (read[REPORTS], planned[REPORTS], written)
        | "AllReports" >> beam.Flatten()
        | "Merge" >> beam.CombineGlobally(MergeReports())
        | "Manifest" >> beam.Map(write_manifest, out_dir, cfg, inputs)
    )


def run_preprocess(
    labels: list[str | Path],
    videos: str | Path | dict,
    out_dir: str | Path,
    cfg: PreprocessConfig | None = None,
    beam_args: list[str] | None = None,
) -> dict:
    """Run the pipeline (DirectRunner unless `beam_args` say otherwise); returns the manifest it wrote.

    labels, videos and out_dir may be local paths or gs:// / s3:// URLs (with the filesystem's options in
    `beam_args`, e.g. --s3_endpoint_url)."""
    from apache_beam.io.filesystems import FileSystems

    cfg = cfg or PreprocessConfig()
    out = str(out_dir)
    options = PipelineOptions(beam_args or ["--runner=DirectRunner"])
    FileSystems.set_options(options)  # the launcher resolves the label roots and reads the manifest back
    if not storage.is_remote(out):
        Path(out).mkdir(parents=True, exist_ok=True)
    inputs = {"labels": [str(x) for x in labels], "videos": "(mapping)" if isinstance(videos, dict) else str(videos)}
    with beam.Pipeline(options=options) as p:
        build_pipeline(p, labels, videos, out, cfg, inputs)
    m = json.loads(storage.read_bytes(storage.join(out, MANIFEST)))
    if not m["inputs"]["chunks_found"] and not m["counts"].get("label_sources_skipped"):
        raise FileNotFoundError(f"no label chunks (<video_id>/<video_id>_chunk_NNNN/metadata.json) under {labels}")
    return m
