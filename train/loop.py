"""The training loop: data -> sharded train step -> metrics, checkpoints and the EMA export.

Device work runs one step ahead of the host: step n+1 is dispatched before the metrics of step n are read, so the
NaN/Inf guard checks every step (and names it) without stalling the accelerator. A step is checked before it is
saved, so a checkpoint never holds a non-finite state. SIGTERM (preemption) saves the current step and returns.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from nitrogen_jax.config import NitroGenConfig
from nitrogen_jax.model import NitroGenModel
from nitrogen_jax.policy import PARTS, abstract_params, count_parameters
from nitrogen_jax.train.checkpoint import (CheckpointStore, check_same_architecture, export_policy,
                                          load_policy_params, read_policy_config)
from nitrogen_jax.train.config import TrainConfig
from nitrogen_jax.train.data import BatchSource
from nitrogen_jax.train.flops import peak_flops, train_flops_per_sample
from nitrogen_jax.train.metrics import MetricWriter
from nitrogen_jax.train.optimizer import learning_rate_schedule, make_optimizer, trainable_mask
from nitrogen_jax.train.sharding import check_batch_size, fsdp_shardings, make_mesh, place_batch
from nitrogen_jax.train.state import abstract_train_state, init_train_state
from nitrogen_jax.train.step import BATCH_KEYS, make_eval_step, make_train_step

CHECKPOINTS, LOGS, POLICY = "checkpoints", "logs", "policy"
EVAL_SEED = 1234


class NonFiniteLoss(FloatingPointError):
    def __init__(self, step: int, metrics: dict, last_checkpoint: int | None):
        self.step = step
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        super().__init__(f"non-finite training metrics at step {step} ({shown}); stopped without saving it. "
                         f"Last checkpoint: {'none' if last_checkpoint is None else f'step {last_checkpoint}'}")


@dataclasses.dataclass
class RunSummary:
    workdir: Path
    start_step: int
    final_step: int
    preempted: bool
    policy_dir: Path | None
    last_metrics: dict


@contextlib.contextmanager
def preemption_flag():
    """A threading.Event set by SIGTERM while inside the block (main thread only; elsewhere never set)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def trained_parts(trainable) -> set[str]:
    return {p for p in PARTS if any(jax.tree.leaves(trainable[p]))}


def train(model_config: NitroGenConfig, cfg: TrainConfig, batches: BatchSource, workdir: str | Path, *,
          pretrained: str | Path | None = None, resume: bool = True, eval_batches: list[dict] | None = None,
          export: bool = True, progress: bool = True, devices=None) -> RunSummary:
    """Train (or resume) in `workdir`: checkpoints/, logs/ (TensorBoard + metrics.jsonl), policy/ (EMA export).

    pretrained: a Policy directory to start from (fine-tuning); ignored when resuming, as the checkpoint has it.
    eval_batches: process-local validation batches; their velocity loss under the EMA params is logged as
    val_loss every `cfg.eval_every` steps and at the end.
    """
    workdir = Path(workdir).absolute()
    say = tqdm.write if jax.process_index() == 0 else (lambda *_: None)
    # Checks that need no devices come first: a wrong checkpoint fails before anything is built.
    store = CheckpointStore(workdir / CHECKPOINTS, cfg.keep_checkpoints)
    try:
        latest = store.latest_step()
        if latest is not None:
            if not resume:
                raise ValueError(f"{workdir / CHECKPOINTS} already holds checkpoints (latest step {latest}); "
                                 f"resume, or choose another output directory")
            saved_model, saved_train = store.read_configs(latest)
            check_same_architecture(model_config, saved_model, f"{workdir / CHECKPOINTS} step {latest}")
            changed = [f"{k}: {v} -> {getattr(cfg, k)}" for k, v in saved_train.to_dict().items() if getattr(cfg, k) != v]
            if changed:
                say(f"resuming with changed training settings: {'; '.join(changed)}")
        elif pretrained is not None:
            check_same_architecture(model_config, read_policy_config(pretrained), str(pretrained))

        mesh = make_mesh(cfg.mesh_shape, devices)
        check_batch_size(cfg.batch_size, mesh, cfg.grad_accum_steps)
        model = NitroGenModel(model_config, remat=cfg.remat)
        abstract = abstract_params(model_config)
        trainable = trainable_mask(abstract, cfg.freeze)
        tx = make_optimizer(cfg, trainable)
        schedule = learning_rate_schedule(cfg)
        pi, pc = jax.process_index(), jax.process_count()
        data = batches(batch_size=cfg.batch_size // pc, seed=cfg.seed, action_horizon=model_config.action_horizon,
                       shard_index=pi, shard_count=pc)

        if latest is not None:
            target, shardings = abstract_train_state(model, tx, mesh, cfg.fsdp_min_size)
            state = store.restore(latest, target, data)
            say(f"resumed from {workdir / CHECKPOINTS} step {latest}")
        else:
            params = None
            if pretrained is not None:
                shards = fsdp_shardings(abstract, mesh, cfg.fsdp_min_size)
                params = load_policy_params(pretrained, jax.tree.map(
                    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shards))
                say(f"fine-tuning from {pretrained}")
            state, shardings = init_train_state(model, tx, mesh, cfg.seed, cfg.fsdp_min_size, params)

    except BaseException:
        store.close()
        raise

    train_step = make_train_step(model, tx, cfg, trainable, schedule, mesh, shardings)
    eval_step = make_eval_step(model, mesh, shardings.ema_params) if eval_batches else None
    parts = trained_parts(trainable)
    flops_per_step = train_flops_per_sample(model_config, parts) * cfg.batch_size
    peak = peak_flops(jax.devices()[0])
    n_params = count_parameters(abstract)["total"]
    say(f"{n_params / 1e6:.2f}M params (training {', '.join(sorted(parts))}), mesh {dict(mesh.shape)}, "
        f"batch {cfg.batch_size} x {cfg.grad_accum_steps} micro-batch(es), {flops_per_step / 1e12:.3g} TFLOP/step, "
        f"compute {model_config.compute_dtype}{', remat' if cfg.remat else ''}")

    writer = MetricWriter(workdir / LOGS, enabled=pi == 0)
    start = step = int(jax.device_get(state.step))
    saved = latest
    last = {"time": time.perf_counter(), "metrics": {}}

    def report(n: int, device_metrics) -> None:
        host = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
        if not (math.isfinite(host["loss"]) and math.isfinite(host["grad_norm"])):
            raise NonFiniteLoss(n, host, saved)
        now = time.perf_counter()
        dt, last["time"] = now - last["time"], now
        host["step_time_s"] = dt
        host["samples_per_s"] = cfg.batch_size / dt
        if peak:
            host["mfu"] = flops_per_step / dt / (peak * mesh.size)
        writer.write(n, host)
        last["metrics"] = host
        bar.set_postfix(loss=f"{host['loss']:.4f}", sps=f"{host['samples_per_s']:.1f}", refresh=False)
        bar.update(n - bar.n)

    def evaluate(n: int) -> None:
        losses = [float(eval_step(state.ema_params, place_batch({k: b[k] for k in BATCH_KEYS}, mesh),
                                  jax.random.PRNGKey(EVAL_SEED + i))) for i, b in enumerate(eval_batches)]
        writer.write(n, {"val_loss": float(np.mean(losses))})
        last["metrics"]["val_loss"] = float(np.mean(losses))

    preempted = False
    bar = tqdm(total=cfg.num_steps, initial=start, unit="step", disable=not progress or pi != 0, dynamic_ncols=True)
    try:
        with preemption_flag() as stop:
            pending = None
            while step < cfg.num_steps:
                local = next(data)
                state, metrics = train_step(state, place_batch({k: local[k] for k in BATCH_KEYS}, mesh))
                step += 1
                if pending is not None:
                    report(*pending)
                pending = (step, metrics)
                due_save = step % cfg.save_every == 0 or step == cfg.num_steps or stop.is_set()
                due_eval = eval_step is not None and cfg.eval_every and step % cfg.eval_every == 0
                if due_save or due_eval:
                    report(*pending)
                    pending = None
                if due_eval:
                    evaluate(step)
                if due_save:
                    store.save(state, data, model_config, cfg)
                    saved = step
                if stop.is_set():
                    preempted = True
                    say(f"SIGTERM: saved step {step}, stopping")
                    break
            if pending is not None:
                report(*pending)
        if saved != step:
            store.save(state, data, model_config, cfg)
        if eval_step is not None and not preempted and not (cfg.eval_every and step % cfg.eval_every == 0):
            evaluate(step)
    finally:
        bar.close()
        store.wait()
        store.close()
        writer.close()

    policy = None
    if export and not preempted:
        policy = export_policy(model_config, state.ema_params, workdir / POLICY)
        say(f"exported the EMA policy to {policy}")
    return RunSummary(workdir, start, step, preempted, policy, last["metrics"])
