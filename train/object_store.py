"""Orbax checkpoints in a bucket: `gs://` natively, `s3://` through tensorstore's own S3 driver.

Orbax (0.12) writes the small files of a step through `etils.epath` (fsspec, so `s3://` works) but builds the
tensorstore spec of the arrays itself, and only sends `gs://` to an object-store driver: an `s3://` path reaches
tensorstore's *file* driver and fails ("Checkpoint path should be absolute"). `route_s3_arrays()` adds the S3 case
at the three places orbax decides it (path normalisation, "is this remote", the kvstore spec), leaving every other
path as orbax has it. The endpoint comes from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (an emulator, MinIO) and
the region from `AWS_REGION` / `AWS_DEFAULT_REGION`, as boto3 and s3fs read them; credentials from the usual chain.

Object stores cannot rename a folder, so a remote step is committed by a `commit_success.txt` written last
(orbax's COMMIT_FILE mode, its default for GCS): a step cut off mid-write has no such file and is passed over.
"""

from __future__ import annotations

import os
from typing import Any

from etils import epath

from nitrogen_jax.data.storage import is_remote, scheme

_routed = False


def _s3_kvstore(url: str) -> dict[str, Any]:
    bucket, _, key = url[len("s3://") :].partition("/")
    spec: dict[str, Any] = {"driver": "s3", "bucket": bucket, "path": key}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        spec["endpoint"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        spec["aws_region"] = region
    return spec


def route_s3_arrays() -> None:
    """Make orbax write and read the arrays of `s3://` checkpoints with tensorstore's S3 driver (idempotent)."""
    global _routed
    if _routed:
        return
    from orbax.checkpoint._src.path import gcs_utils
    from orbax.checkpoint._src.serialization import tensorstore_utils as ts_utils

    remote, normalize, kvstore = ts_utils._use_gcs_driver, ts_utils._normalize_path, gcs_utils.get_kvstore_for_gcs

    def use_remote_driver(directory: str) -> bool:
        return directory.startswith("s3://") or remote(directory)

    def normalize_path(path: str) -> str:  # os.path.normpath makes "s3://b/k" into "s3:/b/k"
        return normalize(path).replace("s3:/", "s3://", 1) if path.startswith("s3://") else normalize(path)

    def kvstore_for(path: str) -> dict[str, Any]:
        return _s3_kvstore(path) if path.startswith("s3://") else kvstore(path)

    ts_utils._use_gcs_driver = use_remote_driver
    ts_utils._normalize_path = normalize_path
    gcs_utils.get_kvstore_for_gcs = kvstore_for
    _routed = True


def checkpoint_path(directory: str | os.PathLike) -> epath.Path:
    """An orbax-ready path: a bucket URL as is (with S3 arrays routed), a local folder made absolute."""
    if not is_remote(directory):
        return epath.Path(os.path.abspath(directory))
    if scheme(directory) not in ("gs", "s3"):
        raise ValueError(f"checkpoint directory {directory}: only local folders, gs:// and s3:// are supported")
    if scheme(directory) == "s3":
        route_s3_arrays()
    return epath.Path(str(directory))


def atomicity_options(directory: str | os.PathLike):
    """Commit-file atomicity for buckets (no folder renames there); orbax's choice for local folders."""
    import orbax.checkpoint as ocp

    if is_remote(directory):
        return ocp.options.AtomicityOptions(mode=ocp.options.AtomicityMode.COMMIT_FILE)
    return None
