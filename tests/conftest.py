"""Fixtures shared across test files (pytest finds them here; no test imports them)."""

import pytest

from tests.s3_server import bucket, s3_endpoint  # noqa: F401  (session S3 server fixtures, defined beside it)
from tests.train_support import session_shards, subprocess_env


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The Atari sample as TFRecord shards, built once per session."""
    return session_shards(tmp_path_factory)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One device and the session's compilation cache: runs that share a train step compile it once (resumed runs
    must run the very same executable anyway). Sharded checkpoints across processes: test_train_multihost.py."""
    return subprocess_env(tmp_path_factory, devices=1)
