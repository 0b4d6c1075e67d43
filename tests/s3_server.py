"""A real S3 endpoint for the tests: moto's server on 127.0.0.1 at a free port, reached over HTTP by s3fs (the
loader), tensorstore (orbax arrays) and boto3, through the same environment variables a cloud run would set."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server() -> Iterator[str]:
    """Run `moto_server` until the block ends; yields its endpoint URL."""
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on port {port}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server; this process's (and its children's) AWS variables point at it for the session. One per
    session: fsspec (under orbax's epath) caches its S3 client with the endpoint it was made with."""
    pytest.importorskip("s3fs")
    saved = {k: os.environ.get(k) for k in (*S3_ENV, "AWS_ENDPOINT_URL")}
    with moto_server() as url:
        os.environ.update(S3_ENV, AWS_ENDPOINT_URL=url)
        try:
            yield url
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket's URL (s3://...)."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


def upload_folder(local: Path, url: str) -> None:
    """Every file of a local folder to `url/` (the shards as a pipeline would have written them to a bucket)."""
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    for p in sorted(local.iterdir()):
        if p.is_file():
            fs.put_file(str(p), f"{url}/{p.name}")
