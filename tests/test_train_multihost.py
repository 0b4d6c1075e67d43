"""Multi-host training for real: two processes (one CPU device each, gloo collectives) joined by
jax.distributed, parameters FSDP-sharded across them, each reading its own shard of the records; a stopped run resumed on both processes (per-process
Grain iterator state) continues with bitwise the losses of an uninterrupted one."""

import shutil
import socket
import subprocess
import sys

import pytest

from nitrogen_jax.policy import Policy
from nitrogen_jax.train.metrics import by_step, read_jsonl

pytestmark = pytest.mark.slow  # end-to-end training runs


def run_two_processes(shards, out, steps, env):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    args = [
        "train",
        "--preset",
        "tiny",
        "--dataset",
        str(shards),
        "--out",
        str(out),
        "--num-steps",
        str(steps),
        "--batch-size",
        "4",
        "--save-every",
        "2",
        "--warmup-steps",
        "1",
        "--schedule",
        "constant",
        "--learning-rate",
        "1e-3",
        "--mesh-shape",
        "1",
        "2",
        "1",
        "--fsdp-min-size",
        "256",
        "--no-progress",
        "--distributed",
        "--coordinator-address",
        f"localhost:{port}",
        "--num-processes",
        "2",
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nitrogen_jax.cli", *args, "--process-id", str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
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
