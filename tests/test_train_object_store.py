"""Training on object storage, against a real S3 endpoint (moto server): `nitrogen-jax train` reads its shards from
s3:// and writes its orbax checkpoints there (arrays through tensorstore's S3 driver, a commit file instead of a
rename); a run resumed from the bucket redoes the lost steps bitwise; a step without its commit file is passed
over. The dataset's alignment settings come from its manifest.json, locally or in the bucket, and fine-tuning
warns when they differ from the pretrained policy's; the release converter records the release's action_shift."""

import json
import os
import subprocess
import sys
import warnings

import fsspec
import pytest

from nitrogen_jax.config import get_config
from nitrogen_jax.train.checkpoint import CheckpointStore
from nitrogen_jax.train.data import alignment_mismatch, dataset_location, read_alignment, tfrecord_batches
from nitrogen_jax.train.loop import AlignmentWarning, warn_alignment
from nitrogen_jax.train.metrics import by_step, read_jsonl
from tests.s3_server import upload_folder
from tests.train_support import small_run


@pytest.fixture
def s3_shards(shards, bucket):
    url = f"{bucket}/sample/shards"
    upload_folder(shards, url)
    return url


def test_dataset_location_repairs_a_url_folded_by_pathlib():
    from pathlib import Path

    assert dataset_location(Path("s3://bucket/a/b")) == "s3://bucket/a/b"
    assert dataset_location("gs://bucket/a") == "gs://bucket/a"
    assert dataset_location(Path("/data/shards")) == "/data/shards"


def test_alignment_from_the_manifest_and_the_finetune_warning(shards, s3_shards):
    local, remote = read_alignment(shards), read_alignment(s3_shards)
    manifest = json.loads((shards / "manifest.json").read_text())["config"]
    assert local == remote == {k: manifest[k] for k in ("action_shift", "action_fps", "action_horizon", "layout")}
    release = get_config("nitrogen-500m").replace(action_shift=3)
    diff = alignment_mismatch(local, release)
    assert diff == [f"action_shift: dataset {manifest['action_shift']} != policy 3"]
    assert alignment_mismatch(local, release.replace(action_shift=manifest["action_shift"])) == []
    with pytest.warns(AlignmentWarning, match="action_shift: dataset 0 != policy 3.*--action-shift 3"):
        warn_alignment(tfrecord_batches(s3_shards), release, "policies/ng", print)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_alignment(tfrecord_batches(shards), release.replace(action_shift=0), "policies/ng", print)


def test_release_converter_records_action_shift():
    pytest.importorskip("torch")
    from nitrogen_jax.convert.release import config_from_release, to_plain_tensors
    from tests.test_model_convert import CKPT_CONFIG, make_reference

    tensors = to_plain_tensors(make_reference().state_dict())
    config, _ = config_from_release(tensors, CKPT_CONFIG, vision_heads=2)
    assert CKPT_CONFIG["modality_cfg"]["action_shift"] == 3 and config.action_shift == 3
    no_modality = {k: v for k, v in CKPT_CONFIG.items() if k != "modality_cfg"}
    config, notes = config_from_release(tensors, no_modality, vision_heads=2)
    assert config.action_shift == 0 and any("no action_shift" in n for n in notes)


def run_train(dataset: str, ckpt: str, out, env) -> str:
    args = [
        *small_run("train", dataset, out, steps=4, save_every=2, warmup=1),
        *("--preset", "tiny", "--checkpoint-dir", ckpt),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "nitrogen_jax.cli", *args], env=env, capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.slow  # two end-to-end training runs
def test_train_reads_and_checkpoints_through_s3_and_resumes_bitwise(s3_shards, bucket, env, tmp_path):
    env = {**env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}  # the endpoint of this module
    ckpt, out = f"{bucket}/runs/tiny/checkpoints", tmp_path / "run"
    run_train(s3_shards, ckpt, out, env)
    first = by_step(read_jsonl(out / "logs" / "metrics.jsonl"), "loss")
    assert sorted(first) == [1, 2, 3, 4]
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    keys = {k.split("/checkpoints/", 1)[1] for k in fs.find(ckpt)}
    assert {"2/commit_success.txt", "4/commit_success.txt", "4/data/process_0-of-1.json"} <= keys
    assert any(k.startswith("4/state/") and "/d/" in k for k in keys)  # the arrays' tensorstore chunks
    assert not (out / "checkpoints").exists()  # nothing went to the local run directory
    assert CheckpointStore(ckpt).latest_step() == 4

    # A step whose commit file is missing (a save cut off) is not a checkpoint: the resume starts from step 2.
    fs.rm(f"{ckpt}/4/commit_success.txt")
    assert CheckpointStore(ckpt).latest_step() == 2
    log = run_train(s3_shards, ckpt, out, env)
    assert f"resumed from {ckpt} step 2" in log
    records = read_jsonl(out / "logs" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 3, 4]
    assert [r["loss"] for r in records[4:]] == [first[3], first[4]]
