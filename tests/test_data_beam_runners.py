"""The pipeline as a distributed runner executes it: worker processes (DirectRunner multi_processing) and object
storage (a local S3 server, moto, through Beam's own s3 filesystem: the code path of a cloud bucket)."""

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from nitrogen_jax.actions import Gamepad
from nitrogen_jax.data.example import decode_sample
from nitrogen_jax.data.layout import write_chunks
from nitrogen_jax.data.pipeline import run_preprocess
from nitrogen_jax.data.preprocess import PreprocessConfig
from nitrogen_jax.data.tfrecord import scan_records
from nitrogen_jax.data.video import write_video
from tests.s3_server import S3_ENV

CFG = PreprocessConfig(density_threshold=0, segment_s=1.0, records_per_shard=25, action_horizon=4)


def frame(n: int) -> np.ndarray:
    img = np.zeros((64, 96, 3), np.uint8)
    for b in range(8):
        img[:32, b * 12 : (b + 1) * 12] = 255 * (n >> b & 1)
    return img


def number(rgb: np.ndarray) -> int:
    return sum(1 << b for b in range(8) if rgb[64, int((b + 0.5) * 256 / 8)].mean() > 128)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two 60 fps videos of 150 numbered frames; one's labels as chunk folders, the other's in a tar.gz shard."""
    root = tmp_path_factory.mktemp("runners")
    rng = np.random.default_rng(1)
    for vid in ("alpha", "beta"):
        write_video(root / "videos" / f"{vid}.mp4", (frame(n) for n in range(150)), 60)
        pad = Gamepad(rng.random((120, 17)) < 0.5, rng.uniform(-1, 1, (120, 2)), rng.uniform(-1, 1, (120, 2)))
        write_chunks(root / ("labels" if vid == "alpha" else "tree"), vid, pad, start_frame=20, chunk_size=50)
    with tarfile.open(root / "labels" / "SHARD_0000.tar.gz", "w:gz") as tar:
        tar.add(root / "tree" / "beta", arcname="SHARD_0000/beta")
    return root


def check_output(m: dict, files: dict[str, bytes]) -> None:
    """240 samples in 2 videos x 2 one-second segments, shards of at most 25 records, each on its own frame."""
    assert m["counts"]["samples"] == 240 and m["counts"]["segments"] == 4 and m["skipped"] == []
    assert m["inputs"]["chunks_found"] == 6 and m["inputs"]["videos_found"] == 2
    assert {s["file"] for s in m["shards"]} == {n for n in files if n.endswith(".tfrecord")}
    assert max(s["records"] for s in m["shards"]) == 25
    samples = []
    for name, data in files.items():
        if name.endswith(".tfrecord"):
            local = Path(f"/tmp/_check_{name}")
            local.write_bytes(data)
            samples += [decode_sample(d) for _, d in scan_records(local)]
            local.unlink()
            assert len(files[name + ".index"]) == 16 * next(s["records"] for s in m["shards"] if s["file"] == name)
    import cv2

    for vid in ("alpha", "beta"):
        mine = sorted((s for s in samples if s.video_id == vid), key=lambda s: s.label_row)
        assert [s.label_row for s in mine] == list(range(120))
        got = []
        for s in mine:
            img = cv2.imdecode(np.frombuffer(s.jpeg, np.uint8), cv2.IMREAD_COLOR_RGB)
            assert img is not None, (vid, s.label_row)
            got.append(number(img))
        assert got == [20 + r for r in range(120)]


def test_multi_process_runner(inputs, tmp_path):
    args = ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    m = run_preprocess([inputs / "labels"], inputs / "videos", tmp_path, CFG, beam_args=args)
    check_output(m, {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "manifest.json"})


@pytest.mark.slow  # ~35 s: moto start-up and many small S3 requests
def test_object_storage(inputs, bucket, s3_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    name = bucket.removeprefix("s3://")
    for p in inputs.rglob("*"):
        rel = p.relative_to(inputs).as_posix()
        if p.is_file() and not rel.startswith("tree/"):
            s3.upload_file(str(p), name, rel)
    args = [
        "--runner=DirectRunner",
        f"--s3_endpoint_url={s3_endpoint}",
        f"--s3_access_key_id={S3_ENV['AWS_ACCESS_KEY_ID']}",
        f"--s3_secret_access_key={S3_ENV['AWS_SECRET_ACCESS_KEY']}",
        f"--s3_region_name={S3_ENV['AWS_DEFAULT_REGION']}",
    ]
    m = run_preprocess([f"{bucket}/labels"], f"{bucket}/videos", f"{bucket}/out", CFG, beam_args=args)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=name, Prefix="out/")["Contents"]]
    files = {k[4:]: s3.get_object(Bucket=name, Key=k)["Body"].read() for k in keys}
    assert json.loads(files.pop("manifest.json")) == m  # written by the pipeline, into the bucket
    assert not [k for k in files if k.endswith(".tmp")]
    check_output(m, files)
