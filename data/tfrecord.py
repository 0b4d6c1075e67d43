"""TFRecord files without TensorFlow: framing, an offset index for random access, and checked reads.

Each record is framed as `tf.data.TFRecordDataset` expects:

    uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

with masked_crc(x) = ((crc32c(x) >> 15 | crc32c(x) << 17) + 0xa282ead8) mod 2^32. Beside every shard
`<name>.tfrecord` lies `<name>.tfrecord.index`: one little-endian uint64 pair (offset, data length) per record,
so a reader fetches record i with a single `os.pread` and no scan.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import google_crc32c
import numpy as np

from nitrogen_jax.data import storage

HEADER = 12  # uint64 length + uint32 masked crc of the length
FOOTER = 4  # uint32 masked crc of the data
INDEX_SUFFIX = ".index"
_MASK_DELTA = 0xA282EAD8


class RecordError(ValueError):
    """A record or shard is corrupt; the message names the file and the record's byte offset."""


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One record's bytes as they go in the file."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def index_path(shard: str | Path) -> Path:
    return Path(f"{shard}{INDEX_SUFFIX}")


class TFRecordWriter:
    """Appends framed records to `stream`, remembering each record's (offset, length) for the index sidecar."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._offset = 0
        self.index: list[tuple[int, int]] = []

    def write(self, data: bytes) -> None:
        framed = frame_record(data)
        self._stream.write(framed)
        self.index.append((self._offset, len(data)))
        self._offset += len(framed)

    def index_bytes(self) -> bytes:
        return index_bytes(self.index)


def index_bytes(pairs) -> bytes:
    """The index sidecar's contents: little-endian uint64 (offset, length) pairs."""
    return np.asarray(pairs, dtype="<u8").reshape(-1, 2).tobytes()


def write_shard(path: str | Path, records) -> int:
    """Write records to a local shard and its index; returns the record count."""
    with open(path, "wb") as f:
        writer = TFRecordWriter(f)
        for r in records:
            writer.write(r)
    index_path(path).write_bytes(index_bytes(writer.index))
    return len(writer.index)


def read_index(shard: str | Path) -> np.ndarray:
    """uint64 [N, 2] (offset, data length) of a shard, local or in a bucket (`gs://`, `s3://`)."""
    ipath = f"{shard}{INDEX_SUFFIX}"
    try:
        raw = storage.read_bytes(ipath)
    except FileNotFoundError:
        raise RecordError(
            f"{ipath}: index sidecar missing (rebuild it with `nitrogen-jax check-shards --rebuild-index`)"
        ) from None
    if len(raw) % 16:
        raise RecordError(f"{ipath}: {len(raw)} bytes is not a whole number of (offset, length) uint64 pairs")
    return np.frombuffer(raw, dtype="<u8").reshape(-1, 2)


def read_record(fd: int, offset: int, length: int, name: str) -> bytes:
    """The data of the record framed at `offset` in the open file `fd`, with both CRCs checked (thread-safe)."""
    buf = os.pread(fd, HEADER + length + FOOTER, offset)
    return check_record(buf, length, offset, name)


def header_length(buf: bytes, offset: int, name: str) -> int:
    """The data length a record header declares, after checking its CRC."""
    if len(buf) < HEADER:
        raise RecordError(f"{name} @ offset {offset}: truncated header ({len(buf)} of {HEADER} bytes)")
    (length,), (len_crc,) = struct.unpack_from("<Q", buf, 0), struct.unpack_from("<I", buf, 8)
    if len_crc != masked_crc32c(buf[:8]):
        raise RecordError(f"{name} @ offset {offset}: length CRC mismatch (corrupt header)")
    return length


def check_record(buf: bytes, length: int, offset: int, name: str) -> bytes:
    """The data of a framed record in `buf`, after checking the header CRC, the length and the data CRC."""
    stored_len = header_length(buf, offset, name)
    if stored_len != length:
        raise RecordError(f"{name} @ offset {offset}: record length {stored_len} disagrees with the index ({length})")
    if len(buf) < HEADER + length + FOOTER:
        raise RecordError(
            f"{name} @ offset {offset}: truncated record ({len(buf)} of {HEADER + length + FOOTER} bytes)"
        )
    data = buf[HEADER : HEADER + length]
    (data_crc,) = struct.unpack_from("<I", buf, HEADER + length)
    if data_crc != masked_crc32c(data):
        raise RecordError(f"{name} @ offset {offset}: data CRC mismatch (corrupt record)")
    return data


def scan_records(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(offset, data) of every record, reading the framing itself (no index); raises RecordError where it breaks."""
    name = str(path)
    with open(path, "rb") as f:
        offset = 0
        while header := f.read(HEADER):
            length = header_length(header, offset, name)
            rest = f.read(length + FOOTER)
            yield offset, check_record(header + rest, length, offset, name)
            offset += HEADER + length + FOOTER


def rebuild_index(path: str | Path) -> int:
    """Re-create a shard's index sidecar by scanning its framing; returns the record count."""
    index = [(offset, len(data)) for offset, data in scan_records(path)]
    index_path(path).write_bytes(index_bytes(index))
    return len(index)
