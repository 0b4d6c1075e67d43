"""Training-side storage: paths that are local folders or object-store URLs (`gs://`, `s3://`), read through one
small interface (the preprocessing pipeline writes through Beam's filesystems instead: `pipeline_io.py`).

Training hosts on a pod read their shards straight from a bucket, so the loader lists, reads and range-reads
through here: fsspec (gcsfs / s3fs) for URLs, and the local fast path (`os.pread` on a cached descriptor, no
fsspec in the way) for plain paths. Endpoints and credentials come from the usual places (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, GCP application default credentials), so an emulator and a cloud bucket take the same code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

LOCAL_SCHEMES = ("", "file")


def scheme(path: str | os.PathLike) -> str:
    s = str(path)
    return s.split("://", 1)[0] if "://" in s else ""


def is_remote(path: str | os.PathLike) -> bool:
    return scheme(path) not in LOCAL_SCHEMES


def _filesystem(url: str) -> Any:
    """A fresh fsspec filesystem for `url`'s scheme (not fsspec's shared instance: an async client made before a
    fork is unusable in the child, so each process holds its own)."""
    import fsspec

    return fsspec.filesystem(scheme(url), skip_instance_cache=True)


def _with_scheme(url: str, key: str) -> str:
    return key if "://" in key else f"{scheme(url)}://{key}"


def join(folder: str | os.PathLike, name: str) -> str:
    return f"{str(folder).rstrip('/')}/{name}" if is_remote(folder) else str(Path(folder) / name)


def list_files(folder: str | os.PathLike, suffix: str) -> list[str]:
    """Sorted paths (URLs for a bucket) of the files directly in `folder` whose names end with `suffix`."""
    if not is_remote(folder):
        return sorted(str(p) for p in Path(folder).glob(f"*{suffix}") if p.is_file())
    url = str(folder).rstrip("/")
    fs = _filesystem(url)
    if not fs.isdir(url):
        return []
    return sorted(_with_scheme(url, k) for k in fs.ls(url, detail=False) if k.endswith(suffix))


def exists(path: str | os.PathLike) -> bool:
    return _filesystem(str(path)).exists(str(path)) if is_remote(path) else Path(path).exists()


def is_dir(path: str | os.PathLike) -> bool:
    return _filesystem(str(path)).isdir(str(path)) if is_remote(path) else Path(path).is_dir()


def read_bytes(path: str | os.PathLike) -> bytes:
    """A whole (small) file: an index sidecar, a manifest."""
    return _filesystem(str(path)).cat_file(str(path)) if is_remote(path) else Path(path).read_bytes()


def file_size(path: str | os.PathLike) -> int:
    return int(_filesystem(str(path)).size(str(path))) if is_remote(path) else Path(path).stat().st_size


class RangeReader:
    """`read(path, offset, length)`: one `os.pread` for a local file, one ranged GET for an object.

    Descriptors and clients are opened lazily and per process (a Grain worker, forked or spawned, opens its own),
    and `pread` / ranged GETs keep no file position, so reader threads can share one.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._filesystems: dict[str, Any] = {}
        self._pid: int | None = None

    def read(self, path: str, offset: int, length: int) -> bytes:
        if self._pid != os.getpid():
            self._fds, self._filesystems, self._pid = {}, {}, os.getpid()
        if not is_remote(path):
            fd = self._fds.get(path)
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY)
            return os.pread(fd, length, offset)
        fs = self._filesystems.get(scheme(path))
        if fs is None:
            fs = self._filesystems[scheme(path)] = _filesystem(path)
        return fs.cat_file(path, start=offset, end=offset + length)

    def __getstate__(self) -> dict:  # descriptors and clients do not cross processes
        return {"_fds": {}, "_filesystems": {}, "_pid": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
