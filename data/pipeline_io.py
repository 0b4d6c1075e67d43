"""The preprocessing pipeline's file I/O: local paths or object storage (gs://, s3://) through Beam's `FileSystems`.

The pipeline's workers and its launcher touch files only through these helpers (Beam's filesystems take the
runner's credentials and options; training hosts, which do not import Beam, read through `storage.py` instead), so a bucket takes the same code
path as a local folder. Object stores have no rename: a shard is written under a temporary name and moved into
place (a copy and a delete there), so a reader never sees a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import BinaryIO

from nitrogen_jax.data.beam import CompressionTypes, FileSystems

RAW = CompressionTypes.UNCOMPRESSED  # never let Beam guess a codec from the name: tarfile reads .tar.gz itself


def join(base: str, *parts: str) -> str:
    """`base/part/...` for local paths and URLs alike (pathlib would turn `s3://b` into `s3:/b`)."""
    return FileSystems.join(str(base), *parts)


def is_remote(path: str) -> bool:
    return "://" in str(path)


def exists(path: str) -> bool:
    return FileSystems.exists(str(path))


def is_file(path: str) -> bool:
    """True when `path` names one file (not a folder or a key prefix)."""
    path = str(path)
    if not is_remote(path):
        return os.path.isfile(path)
    return any(m.path.rstrip("/") == path.rstrip("/") for m in FileSystems.match([path])[0].metadata_list)


def open_read(path: str) -> BinaryIO:
    """A seekable binary stream (object stores read it in ranges; nothing is downloaded up front)."""
    return FileSystems.open(str(path), compression_type=RAW)


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(str(path), compression_type=RAW) as f:
        f.write(data)


def rename(src: str, dst: str) -> None:
    if exists(dst):
        FileSystems.delete([dst])  # a retried work item overwrites its own earlier output
    FileSystems.rename([src], [dst])


@contextlib.contextmanager
def create_then_rename(path: str) -> Iterator[BinaryIO]:
    """Write to `path + '.tmp'`, moved to `path` when the block ends without an error (removed when it fails)."""
    tmp = f"{path}.tmp"
    try:
        with FileSystems.create(tmp, compression_type=RAW) as f:
            yield f
    except BaseException:
        with contextlib.suppress(Exception):
            FileSystems.delete([tmp])
        raise
    rename(tmp, path)


def list_files(pattern: str) -> list[str]:
    """Paths matching a Beam glob (`*` within a path segment, `**` across segments), sorted."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
