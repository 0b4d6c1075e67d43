"""The loader over object storage: shards in an S3 bucket (a real moto server over HTTP) give exactly the records
and batches of the same shards on local disk, by ranged reads, in-process and in Grain worker processes; a bad
object is reported with its URL."""

import gc

import fsspec
import numpy as np
import pytest

from nitrogen_jax.data import storage
from nitrogen_jax.data.loader import TFRecordSource, make_loader
from nitrogen_jax.data.sample_data import make_sample_shards
from nitrogen_jax.data.tfrecord import FOOTER, HEADER, read_index
from tests.s3_server import upload_folder

H = 18


@pytest.fixture(scope="module")
def local_shards(tmp_path_factory):
    return make_sample_shards(tmp_path_factory.mktemp("s3loader"), action_horizon=H, num_frames=60)


@pytest.fixture
def s3_shards(local_shards, bucket):
    url = f"{bucket}/data/shards"
    upload_folder(local_shards, url)
    return url


def test_storage_lists_and_range_reads_a_bucket(local_shards, s3_shards):
    names = [p.rsplit("/", 1)[1] for p in storage.list_files(s3_shards, ".tfrecord")]
    assert names == [p.name for p in sorted(local_shards.glob("*.tfrecord"))]
    assert storage.is_remote(s3_shards) and not storage.is_remote(local_shards)
    first = storage.list_files(s3_shards, ".tfrecord")[0]
    local_first = local_shards / names[0]
    np.testing.assert_array_equal(read_index(first), read_index(local_first))
    assert storage.file_size(first) == local_first.stat().st_size
    offset, length = (int(v) for v in read_index(first)[3])
    reader = storage.RangeReader()
    got = reader.read(first, offset, HEADER + length + FOOTER)
    assert got == local_first.read_bytes()[offset : offset + HEADER + length + FOOTER]
    assert storage.list_files(f"{s3_shards}-missing", ".tfrecord") == []


def test_records_and_batches_match_local(local_shards, s3_shards):
    local, remote = TFRecordSource(local_shards), TFRecordSource(s3_shards)
    assert len(remote) == len(local) == 120
    for i in (0, 1, 59, 60, 119):
        assert remote[i] == local[i]
    a = make_loader(local_shards, batch_size=8, seed=2, action_horizon=H)
    b = make_loader(s3_shards, batch_size=8, seed=2, action_horizon=H)
    for _ in range(3):
        x, y = next(a), next(b)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    state = b.get_state()
    expected = next(b)
    resumed = make_loader(s3_shards, batch_size=8, seed=2, action_horizon=H)
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["frames"], expected["frames"])


@pytest.mark.slow
def test_worker_processes_open_their_own_clients(local_shards, s3_shards):
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    a = make_loader(local_shards, batch_size=4, seed=0, action_horizon=H, num_workers=2)
    b = make_loader(s3_shards, batch_size=4, seed=0, action_horizon=H, num_workers=2)
    for _ in range(2):
        np.testing.assert_array_equal(next(a)["frames"], next(b)["frames"])
    del a, b
    gc.collect()


def test_a_truncated_object_is_reported_by_url(local_shards, s3_shards):
    shard = storage.list_files(s3_shards, ".tfrecord")[1]
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    cut = int(read_index(shard)[10, 0]) + 30
    fs.pipe_file(shard, fs.cat_file(shard)[:cut])
    source = TFRecordSource(s3_shards)
    assert len(source) == 60 + 10
    assert any(shard in p and "truncated" in p for p in source.problems)
    with pytest.raises(FileNotFoundError, match="no \\*.tfrecord shards in s3://"):
        TFRecordSource(f"{s3_shards}-missing")
