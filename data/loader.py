"""The training loader: TFRecord shards -> shuffled, augmented, batched numpy dicts, with a resumable iterator.

    it = make_loader("shards/", batch_size=32, seed=0, action_horizon=18)
    batch = next(it)   # {"frames": uint8 [B,256,256,3], "actions": f32 [B,H,A], "action_mask": f32 [B,H,A]}
    state = it.get_state(); ...; it.set_state(state)   # continues with exactly the same batches

Built on Grain: `TFRecordSource` is a random-access source over the shards' index sidecars, local or in a bucket
(one `os.pread`, or one ranged GET for `gs://` / `s3://`, per record; safe under Grain's reader threads); an
`EpochShuffleSampler` deals each process its slice of one global permutation per epoch (the shuffle spans hosts);
decoding and augmentation are Grain transforms run in worker processes with prefetch. Records that fail their CRC
are logged (file and offset), counted and dropped, or raise when `strict`.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import os
import sys
from pathlib import Path

import cv2
import grain
import numpy as np

try:
    import simplejpeg
except ImportError:  # optional: cv2 decodes the same pixels, a little slower
    simplejpeg = None

from nitrogen_jax.data import storage
from nitrogen_jax.data.augment import AUGMENT_KEY, RandomAugmentParams, RandomGeometric, RandomPhotometric
from nitrogen_jax.data.example import decode_sample
from nitrogen_jax.data.tfrecord import FOOTER, HEADER, RecordError, check_record, read_index

log = logging.getLogger(__name__)
BATCH_KEYS = ("frames", "actions", "action_mask")
TRAIN_KEYS = (*BATCH_KEYS, AUGMENT_KEY)  # what the train step takes: "augment" when augmenting on the device


class TFRecordSource(grain.sources.RandomAccessDataSource):
    """Random access to the records of all `*.tfrecord` shards under a folder, in sorted shard order.

    Shards that are empty, lack an index, or are shorter than their index says are reported in `problems`
    (file and reason) and left out, or raise RecordError when `strict`; a record whose CRC fails at read time
    comes back as None (counted in `corrupt_records` of the reading process) or raises when `strict`.
    """

    def __init__(self, shards: str | Path | list, strict: bool = False):
        paths = storage.list_files(shards, ".tfrecord") if isinstance(shards, (str, Path)) else [str(p) for p in shards]
        if not paths:
            raise FileNotFoundError(f"no *.tfrecord shards in {shards}")
        self.strict = strict
        self.problems: list[str] = []
        self._paths, self._index, starts = [], [], [0]
        for p in paths:
            index = self._checked_index(p)
            if index is not None:
                self._paths.append(p)
                self._index.append(index)
                starts.append(starts[-1] + len(index))
        if starts[-1] == 0:
            raise RecordError(f"no readable records in {shards}: " + "; ".join(self.problems))
        self._starts = starts
        self.corrupt_records = 0
        self._reader = storage.RangeReader()

    def _checked_index(self, path: str) -> np.ndarray | None:
        """The shard's index, cut to the records that lie wholly inside the file; None for an unusable shard."""
        try:
            index = read_index(path)
        except RecordError as e:
            self._problem(str(e))
            return None
        if not len(index):
            self._problem(f"{path}: empty shard (0 records)")
            return None
        size = storage.file_size(path)
        inside = index[:, 0] + index[:, 1] + HEADER + FOOTER <= size
        fit = len(index) if inside.all() else int(np.argmin(inside))
        if fit < len(index):
            self._problem(
                f"{path}: truncated: {size} bytes hold {fit} of the {len(index)} indexed records "
                f"(first missing at offset {int(index[fit, 0])}); {len(index) - fit} records left out"
            )
            return index[:fit] if fit else None
        return index

    def _problem(self, reason: str) -> None:
        if self.strict:
            raise RecordError(reason)
        self.problems.append(reason)
        log.warning("shard problem: %s", reason)
        return None

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, i: int) -> bytes | None:
        s = bisect.bisect_right(self._starts, i) - 1
        offset, length = (int(v) for v in self._index[s][i - self._starts[s]])
        path = self._paths[s]
        try:
            return check_record(self._reader.read(path, offset, HEADER + length + FOOTER), length, offset, path)
        except RecordError as e:
            if self.strict:
                raise
            self.corrupt_records += 1
            log.warning("dropping record %d: %s", i, e)
            return None

    def __repr__(self) -> str:
        return f"TFRecordSource({len(self._paths)} shards, {len(self)} records)"

    @property
    def shards(self) -> list[str]:
        return list(self._paths)


class EpochShuffleSampler:
    """Grain sampler: one seeded permutation of ALL records per epoch, dealt round-robin to the processes.

    Process p of n takes positions p, p + n, p + 2n, ... of the epoch's global permutation, so the processes of an
    epoch together see every record once (the last `records % n` of each permutation are left out, so all
    processes take the same number) and the shuffle mixes records across hosts, not only within a host's range.
    Grain's DataLoader asks process p for global indices p, p + n, p + 2n, ..., which is exactly that position:
    `epoch, position = divmod(index, records_used)`.

    One numpy permutation per epoch (Grain's lazy IndexSampler costs ~100 us a record here, a tenth of the
    per-sample budget). Deterministic in (seed, index), so Grain's iterator state (the next index) resumes exactly.
    """

    def __init__(
        self, num_records: int, *, shard_index: int, shard_count: int, shuffle: bool, num_epochs: int | None, seed: int
    ):
        if not 0 <= shard_index < shard_count:
            raise ValueError(f"shard_index {shard_index} is not in [0, shard_count={shard_count})")
        per_shard = num_records // shard_count
        if per_shard == 0:
            raise ValueError(f"{num_records} records cannot be split over {shard_count} processes")
        self.shard_options = grain.sharding.ShardOptions(shard_index, shard_count, drop_remainder=True)
        self._records, self._used = num_records, per_shard * shard_count
        self._shuffle, self._num_epochs, self._seed = shuffle, num_epochs, seed
        self._epoch = -1
        self._order: np.ndarray | None = None

    def __repr__(self) -> str:  # Grain checks a restored iterator's sampler by its repr
        o = self.shard_options
        return (
            f"EpochShuffleSampler(records={self._used} of {self._records}, shard={o.shard_index}/{o.shard_count}, "
            f"global shuffle={self._shuffle}, num_epochs={self._num_epochs}, seed={self._seed})"
        )

    def __len__(self) -> int:
        return (self._num_epochs if self._num_epochs is not None else sys.maxsize // self._used) * self._used

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self._seed, epoch])
            self._order = rng.permutation(self._records) if self._shuffle else np.arange(self._records)
            self._epoch = epoch
        assert self._order is not None
        return self._order

    def __getitem__(self, index: int) -> grain.RecordMetadata:
        if not 0 <= index < len(self):
            raise IndexError(f"sampler index {index} is outside [0, {len(self)})")
        epoch, position = divmod(index, self._used)
        key = int(self._permutation(epoch)[position])
        return grain.RecordMetadata(
            index=index, record_key=key, rng=np.random.Generator(np.random.Philox(key=self._seed + index))
        )


@dataclasses.dataclass(frozen=True)
class DropCorrupt(grain.transforms.Filter):
    def filter(self, element) -> bool:
        return element is not None


_opencv_configured_in: int | None = None


def _opencv_single_threaded() -> None:
    """Per-sample image ops are small: OpenCV's own thread pool only adds synchronisation (samples per CPU-second
    fell from ~1460 to ~800 with it on this machine). Parallelism comes from Grain's worker processes instead.
    Set once in every process that decodes (the main one, and each worker however it was started)."""
    global _opencv_configured_in
    if _opencv_configured_in != os.getpid():
        cv2.setNumThreads(1)
        _opencv_configured_in = os.getpid()


def decode_jpeg(data: bytes) -> np.ndarray | None:
    """RGB uint8 pixels of a JPEG, None if it does not decode. simplejpeg (libjpeg-turbo straight to RGB, no
    BGR swap or extra buffer) decodes these frames ~15% faster than cv2.imdecode, to the same pixels."""
    if simplejpeg is None:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class DecodeSample(grain.transforms.Map):
    """Serialized Example -> {"frames" RGB uint8 [S,S,3], "actions" f32 [H,A], "action_mask" f32 [H,A]}."""

    action_horizon: int
    image_size: int = 256

    def map(self, record: bytes) -> dict:
        _opencv_single_threaded()
        s = decode_sample(record)
        if s.actions.shape[0] < self.action_horizon:
            raise ValueError(
                f"record of {s.video_id} row {s.label_row} holds {s.actions.shape[0]} action steps, "
                f"the loader asks for {self.action_horizon}: preprocess with a longer --horizon"
            )
        frame = decode_jpeg(s.jpeg)
        if frame is None or frame.shape != (self.image_size, self.image_size, 3):
            raise ValueError(
                f"record of {s.video_id} row {s.label_row}: frame is not a "
                f"{self.image_size}x{self.image_size} RGB JPEG ({None if frame is None else frame.shape})"
            )
        h = self.action_horizon
        return {"frames": frame, "actions": s.actions[:h], "action_mask": s.action_mask[:h]}


def make_loader(
    shards_dir: str | Path,
    *,
    batch_size: int,
    seed: int,
    action_horizon: int,
    shard_index: int = 0,
    shard_count: int = 1,
    augment: bool = True,
    num_workers: int = 0,
    num_epochs: int | None = None,
    shuffle: bool = True,
    strict: bool = False,
    worker_buffer_size: int = 2,
    image_size: int = 256,
    read_threads: int = 0,
    augment_on: str = "host",
):
    """An iterator of training batches with get_state()/set_state() (see module docstring).

    shard_index/shard_count: this process's share of the records (pass jax.process_index()/process_count()
    on multi-host); each process's batches hold `batch_size` samples. num_epochs=None repeats forever.
    num_workers > 0 decodes and augments in that many processes (call `absl.flags.FLAGS.mark_as_parsed()`
    first and keep the program under a `__main__` guard); each worker batches its own records, so the batch
    sequence depends on num_workers: resume with the same value.
    read_threads: threads prefetching raw records in each process. A local read costs ~25 us against ~700 us of
    decode and augment, and a reader thread only contends for the GIL (-15% samples/s here), so 0 by default;
    raise it for high-latency storage (network mounts) and buckets.
    augment_on: "host" augments the frames here; "device" leaves them as decoded and adds the per-record
    parameters as batch["augment"] (float32 [B, 6]) for `augment_on_device` in the train step, which keeps this
    core on decoding (the training path: train/data.py).
    """
    if augment_on not in ("host", "device"):
        raise ValueError(f"augment_on must be 'host' or 'device', got {augment_on!r}")
    source = TFRecordSource(shards_dir, strict=strict)
    sampler = EpochShuffleSampler(
        len(source), shard_index=shard_index, shard_count=shard_count, shuffle=shuffle, num_epochs=num_epochs, seed=seed
    )
    ops = [DropCorrupt(), DecodeSample(action_horizon, image_size)]
    if augment:
        ops += [RandomAugmentParams()] if augment_on == "device" else [RandomGeometric(), RandomPhotometric()]
    ops.append(grain.transforms.Batch(batch_size, drop_remainder=True))
    loader = grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=ops,
        worker_count=num_workers,
        shard_options=sampler.shard_options,
        worker_buffer_size=worker_buffer_size,
        read_options=grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=16 if read_threads else 0),
    )
    return iter(loader)
