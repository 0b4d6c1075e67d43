"""Multi-host training for real: two processes (one CPU device each, gloo collectives) joined by
jax.distributed, parameters FSDP-sharded across them, each reading its slice of one global shuffle; a stopped run
resumed on both processes (per-process Grain iterator state) continues with bitwise the losses of an uninterrupted
one. SIGTERM to one process only stops both at the same step, saved, with data and checkpoints in an S3 bucket."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import fsspec
import pytest

from nitrogen_jax.policy import Policy
from nitrogen_jax.train.checkpoint import CheckpointStore
from nitrogen_jax.train.metrics import by_step, read_jsonl
from tests.s3_server import upload_folder
from tests.train_support import small_run

pytestmark = pytest.mark.slow  # end-to-end training runs


def start_two_processes(shards, out, steps, env, extra=()):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    args = [
        *small_run("train", shards, out, steps=steps, save_every=2, warmup=1, mesh=(1, 2, 1)),
        *("--preset", "tiny", "--schedule", "constant", "--fsdp-min-size", "256"),
        "--distributed",
        "--coordinator-address",
        f"localhost:{port}",
        "--num-processes",
        "2",
        *extra,
    ]
    return [
        subprocess.Popen(
            [sys.executable, "-m", "nitrogen_jax.cli", *args, "--process-id", str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]


def run_two_processes(shards, out, steps, env):
    procs = start_two_processes(shards, out, steps, env)
    logs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    return logs


def test_two_process_fsdp_training_and_resume(shards, env, tmp_path):
    out = tmp_path / "run"
    logs = run_two_processes(shards, out, 4, env)
    assert "mesh {'data': 1, 'fsdp': 2, 'tensor': 1}" in logs[0]
    first = by_step(read_jsonl(out / "logs" / "metrics.jsonl"), "loss")
    assert sorted(first) == [1, 2, 3, 4]  # process 0 writes the metrics, once per step
    data_state = sorted(p.name for p in (out / "checkpoints" / "4" / "data").glob("process_*.json"))
    assert data_state == ["process_0-of-2.json", "process_1-of-2.json"]
    Policy.load(out / "policy")

    # Drop the last checkpoint: the run resumes from step 2 on both processes and must redo steps 3 and 4 exactly.
    shutil.rmtree(out / "checkpoints" / "4")
    logs = run_two_processes(shards, out, 4, env)
    assert "resumed from" in logs[0] and "step 2" in logs[0]
    records = read_jsonl(out / "logs" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 3, 4]
    assert [r["loss"] for r in records[4:]] == [first[3], first[4]]


def test_sigterm_to_one_process_stops_both_at_the_same_step_on_s3(shards, env, bucket, tmp_path):
    url = f"{bucket}/pod/shards"
    upload_folder(shards, url)
    env = {**env, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}  # this module's S3 endpoint
    ckpt, out, steps = f"{bucket}/pod/checkpoints", tmp_path / "run", 400
    procs = start_two_processes(url, out, steps, env, extra=["--checkpoint-dir", ckpt, "--save-every", "1000"])
    metrics = out / "logs" / "metrics.jsonl"
    t0 = time.time()
    while not (metrics.exists() and len(read_jsonl(metrics)) >= 3):
        assert all(p.poll() is None for p in procs), "a process ended before training started"
        assert time.time() - t0 < 300
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)  # process 0 gets nothing
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    stopped = []
    for log in logs:
        saved = re.search(r"process \d saved step (\d+), stopping", log)
        assert saved is not None, log
        stopped.append(int(saved.group(1)))
    assert stopped[0] == stopped[1] < steps, logs
    assert "SIGTERM (another process): process 0" in logs[0] and "SIGTERM (this process): process 1" in logs[1]
    assert all("preempted (SIGTERM), checkpoint saved" in log for log in logs)
    assert CheckpointStore(ckpt).latest_step() == stopped[0]
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    data_state = sorted(
        n for k in fs.ls(f"{ckpt}/{stopped[0]}/data") if (n := k.rsplit("/", 1)[1]).startswith("process_")
    )
    assert data_state == ["process_0-of-2.json", "process_1-of-2.json"]
