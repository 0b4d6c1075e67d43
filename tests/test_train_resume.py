"""Checkpoints end to end through `nitrogen-jax train` on a real (Atari sample) TFRecord dataset:
SIGKILL + resume gives bitwise the same losses, SIGTERM saves and exits cleanly, a half-written checkpoint is
passed over, the EMA export loads as a Policy, fine-tuning starts from it, and bad input gets clear errors."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from nitrogen_jax.cli import main
from nitrogen_jax.policy import Policy
from nitrogen_jax.train.checkpoint import CheckpointStore
from nitrogen_jax.train.metrics import by_step, read_jsonl
from tests.train_support import small_run

pytestmark = pytest.mark.slow  # end-to-end training runs

STEPS, SAVE_EVERY = 24, 6


def train_args(shards, out, command="train", steps=STEPS):
    args = small_run(command, shards, out, steps=steps, save_every=SAVE_EVERY, warmup=2)
    return args + (["--preset", "tiny"] if command == "train" else [])


def start(args, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nitrogen_jax.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout=300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def wait_for(condition, proc, timeout=300):
    t0 = time.time()
    while not condition():
        assert proc.poll() is None, f"run ended (rc {proc.returncode}) before the condition:\n{proc.stdout.read()}"
        assert time.time() - t0 < timeout
        time.sleep(0.02)


def losses(out: Path) -> list[dict]:
    return read_jsonl(out / "logs" / "metrics.jsonl")


@pytest.fixture(scope="module")
def reference(shards, env, tmp_path_factory):
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    proc = start(train_args(shards, out), env)
    log = finish(proc)
    assert proc.returncode == 0, log
    return out


def test_uninterrupted_run_logs_checkpoints_and_exports(reference):
    records = losses(reference)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert all(np.isfinite(r["loss"]) and r["samples_per_s"] > 0 for r in records)
    assert {"grad_norm", "learning_rate", "step_time_s"} <= set(records[-1])
    assert list((reference / "logs").glob("events.out.tfevents.*"))
    assert CheckpointStore(reference / "checkpoints").latest_step() == STEPS
    # The export is the EMA params of the last checkpoint, loadable for serving.
    saved = ocp.StandardCheckpointer().restore(reference / "checkpoints" / str(STEPS) / "state")
    policy = Policy.load(reference / "policy")
    import jax

    for a, b in zip(jax.tree.leaves(policy.params), jax.tree.leaves(saved["ema_params"]), strict=False):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    chunk = np.asarray(policy.sample(np.zeros((1, 256, 256, 3), np.uint8), rng=jax.random.key(0)))
    assert chunk.shape == (1, 18, 25) and np.isfinite(chunk).all()


def test_sigkill_and_sigterm_resume_bitwise(shards, env, reference, tmp_path):
    expected = by_step(losses(reference), "loss")
    killed, preempted = tmp_path / "killed", tmp_path / "preempted"
    a = start(train_args(shards, killed), env)
    b = start(train_args(shards, preempted), env)
    # Signals go early in each run (both run the cached executable and a step takes ~0.1 s).
    wait_for(lambda: (preempted / "logs" / "metrics.jsonl").exists() and len(losses(preempted)) >= 3, b)
    b.send_signal(signal.SIGTERM)
    wait_for(lambda: (killed / "checkpoints" / str(SAVE_EVERY)).is_dir(), a)
    a.send_signal(signal.SIGKILL)
    log_b = finish(b)
    finish(a)
    assert a.returncode == -signal.SIGKILL
    assert b.returncode == 0 and "preempted (SIGTERM), checkpoint saved" in log_b, log_b
    stopped = losses(preempted)[-1]["step"]
    assert stopped < STEPS and CheckpointStore(preempted / "checkpoints").latest_step() == stopped

    # A half-written later checkpoint (what a kill during a save leaves) must be passed over.
    partial = preempted / "checkpoints" / f"{stopped + 1}.orbax-checkpoint-tmp-1700000000"
    shutil.copytree(preempted / "checkpoints" / str(stopped), partial)
    for f in sorted(p for p in partial.rglob("*") if p.is_file())[:3]:
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    assert CheckpointStore(preempted / "checkpoints").latest_step() == stopped

    a, b = start(train_args(shards, killed), env), start(train_args(shards, preempted), env)
    log_a, log_b = finish(a), finish(b)
    assert a.returncode == 0 and b.returncode == 0, log_a + log_b
    assert f"step {stopped}" in log_b and "resumed from" in log_a
    for out in (killed, preempted):
        records = losses(out)
        assert {r["step"] for r in records} == set(range(1, STEPS + 1))
        # Every logged loss, before the interruption and after the resume (steps redone after the last
        # checkpoint included), is bitwise the uninterrupted run's.
        assert [r["loss"] for r in records] == [expected[r["step"]] for r in records]


def test_finetune_starts_from_the_export(shards, env, reference, tmp_path):
    proc = start(train_args(shards, tmp_path / "ft", command="finetune") + ["--pretrained", str(reference)], env)
    log = finish(proc)
    assert proc.returncode == 0 and "fine-tuning from" in log, log
    first_ft, first_scratch = losses(tmp_path / "ft")[0]["loss"], losses(reference)[0]["loss"]
    assert first_ft < first_scratch - 0.05, (first_ft, first_scratch)


def test_clear_errors(shards, reference, tmp_path, capsys):
    def error(args):
        assert main(args) == 2
        return capsys.readouterr().err

    assert "dataset directory /nonexistent does not exist" in error(
        ["train", "--dataset", "/nonexistent", "--out", str(tmp_path / "x")]
    )
    assert "data x fsdp = 8 x 1 = 8" in error(
        train_args(shards, tmp_path / "y") + ["--mesh-shape", "8", "1", "1", "--batch-size", "12"]
    )
    err = error(
        train_args(shards, tmp_path / "z", command="finetune") + ["--pretrained", str(reference), "--preset", "seed"]
    )
    assert "another architecture" in err and "action_layout: 'seed' != 'release'" in err
    err = error(train_args(shards, reference) + ["--model.action-horizon", "16"])
    assert "another architecture" in err and "action_horizon: 16 != 18" in err
    assert "already holds checkpoints" in error(train_args(shards, reference) + ["--no-resume"])
