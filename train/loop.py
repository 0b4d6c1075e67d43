"""The training loop: data -> sharded train step -> metrics, checkpoints and the EMA export.

Device work runs one step ahead of the host: step n+1 is dispatched before the metrics of step n are read, so the
NaN/Inf guard checks every step (and names it) without stalling the accelerator. A step is checked before it is
saved, so a checkpoint never holds a non-finite state. SIGTERM (preemption) on any host makes every host save the
same step and return (train/preemption.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from nitrogen_jax.config import NitroGenConfig
from nitrogen_jax.data.loader import BATCH_KEYS, TRAIN_KEYS
from nitrogen_jax.model import PARTS, NitroGenModel, abstract_params, count_parameters
from nitrogen_jax.train.checkpoint import (
    CheckpointStore,
    check_same_architecture,
    export_policy,
    load_policy_params,
    read_policy_config,
)
from nitrogen_jax.train.config import TrainConfig
from nitrogen_jax.train.data import BatchSource, alignment_mismatch
from nitrogen_jax.train.flops import peak_flops, train_flops_per_sample
from nitrogen_jax.train.metrics import MetricWriter
from nitrogen_jax.train.optimizer import effective_warmup, learning_rate_schedule, make_optimizer, trainable_mask
from nitrogen_jax.train.preemption import any_process, preemption_flag
from nitrogen_jax.train.sharding import check_batch_size, fsdp_shardings, make_mesh, place_batch
from nitrogen_jax.train.state import abstract_train_state, init_train_state
from nitrogen_jax.train.step import make_eval_step, make_train_step

CHECKPOINTS, LOGS, POLICY = "checkpoints", "logs", "policy"
EVAL_SEED = 1234


class AlignmentWarning(UserWarning):
    """The fine-tuning data pairs frames with other action rows than the pretrained policy was trained on."""


class NonFiniteLoss(FloatingPointError):
    def __init__(self, step: int, metrics: dict, last_checkpoint: int | None):
        self.step = step
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        super().__init__(
            f"non-finite training metrics at step {step} ({shown}); stopped without saving it. "
            f"Last checkpoint: {'none' if last_checkpoint is None else f'step {last_checkpoint}'}"
        )


@dataclasses.dataclass
class RunSummary:
    workdir: Path
    start_step: int
    final_step: int
    preempted: bool
    policy_dir: Path | None
    last_metrics: dict


def warn_alignment(batches: BatchSource, policy: NitroGenConfig, where: str | Path, say: Callable[[str], None]) -> None:
    """Fine-tuning on data aligned otherwise than the pretrained policy's (another action_shift, rate, layout)
    teaches it to act early or late: say so before training starts."""
    alignment = getattr(batches, "alignment", lambda: None)()
    if alignment is None:
        return
    diff = alignment_mismatch(alignment, policy)
    if diff:
        warnings.warn(
            f"the dataset's alignment differs from the pretrained policy's ({where}): {'; '.join(diff)}. "
            f"Preprocess with the policy's settings (e.g. --action-shift {policy.action_shift}) so each frame is "
            f"paired with the action rows the policy learned to predict",
            AlignmentWarning,
            stacklevel=2,
        )


def trained_parts(trainable) -> set[str]:
    return {p for p in PARTS if any(jax.tree.leaves(trainable.get(p, {})))}


@dataclasses.dataclass
class _Run:
    """What `_setup` builds and the loop and `_finish` use: one training run's pieces."""

    workdir: Path
    model_config: NitroGenConfig
    cfg: TrainConfig
    store: CheckpointStore
    mesh: Any
    state: Any
    data: Any
    train_step: Callable
    eval_step: Callable | None
    writer: MetricWriter
    flops_per_step: float
    peak: float | None
    saved: int | None  # the last step on disk
    say: Callable[[str], None]
    metrics: dict = dataclasses.field(default_factory=dict)


def train(
    model_config: NitroGenConfig,
    cfg: TrainConfig,
    batches: BatchSource,
    workdir: str | Path,
    *,
    pretrained: str | Path | None = None,
    resume: bool = True,
    eval_batches: list[dict] | None = None,
    export: bool = True,
    progress: bool = True,
    devices=None,
) -> RunSummary:
    """Train (or resume) in `workdir`: checkpoints/, logs/ (TensorBoard + metrics.jsonl), policy/ (EMA export).

    pretrained: a Policy directory to start from (fine-tuning); ignored when resuming, as the checkpoint has it.
    eval_batches: process-local validation batches; their velocity loss under the EMA params is logged as
    val_loss every `cfg.eval_every` steps and at the end.
    Checkpoints go to `cfg.checkpoint_dir` (a folder or a `gs://` / `s3://` URL) or else workdir/checkpoints.
    """
    workdir = Path(workdir).absolute()
    ckpt_dir = cfg.checkpoint_dir or workdir / CHECKPOINTS
    run = _setup(model_config, cfg, batches, workdir, ckpt_dir, pretrained, resume, bool(eval_batches), devices)
    start = int(jax.device_get(run.state.step))
    try:
        step, preempted = _loop(run, start, eval_batches or [], progress)
    finally:
        run.store.wait()
        run.store.close()
        run.writer.close()
    policy = None
    if export and not preempted:
        policy = export_policy(model_config, run.state.ema_params, run.workdir / POLICY)
        run.say(f"exported the EMA policy to {policy}")
    return RunSummary(run.workdir, start, step, preempted, policy, run.metrics)


def _setup(
    model_config: NitroGenConfig,
    cfg: TrainConfig,
    batches: BatchSource,
    workdir: Path,
    ckpt_dir: str | Path,
    pretrained: str | Path | None,
    resume: bool,
    evaluates: bool,
    devices,
) -> _Run:
    """Check the run directory against the request, then build the mesh, the state (restored, fine-tuned or new),
    the data iterator and the jitted steps. Checks that need no devices come first: a wrong checkpoint fails
    before anything is built."""
    say = tqdm.write if jax.process_index() == 0 else (lambda *_: None)
    store = CheckpointStore(ckpt_dir, cfg.keep_checkpoints)
    try:
        latest = store.latest_step()
        if latest is not None:
            if not resume:
                raise ValueError(
                    f"{ckpt_dir} already holds checkpoints (latest step {latest}); "
                    f"resume, or choose another output directory"
                )
            saved_model, saved_train = store.read_configs(latest)
            check_same_architecture(model_config, saved_model, f"{ckpt_dir} step {latest}")
            changed = [
                f"{k}: {v} -> {getattr(cfg, k)}" for k, v in saved_train.to_dict().items() if getattr(cfg, k) != v
            ]
            if changed:
                say(f"resuming with changed training settings: {'; '.join(changed)}")
        elif pretrained is not None:
            check_same_architecture(model_config, read_policy_config(pretrained), str(pretrained))
            warn_alignment(batches, read_policy_config(pretrained), pretrained, say)

        mesh = make_mesh(cfg.mesh_shape, devices)
        check_batch_size(cfg.batch_size, mesh, cfg.grad_accum_steps)
        model = NitroGenModel(model_config, remat=cfg.remat)
        abstract = abstract_params(model_config)
        trainable = trainable_mask(abstract, cfg.freeze)
        tx = make_optimizer(cfg, trainable)
        pi, pc = jax.process_index(), jax.process_count()
        data = batches(
            batch_size=cfg.batch_size // pc,
            seed=cfg.seed,
            action_horizon=model_config.action_horizon,
            shard_index=pi,
            shard_count=pc,
        )

        if latest is not None:
            target, shardings = abstract_train_state(model, tx, mesh, cfg.fsdp_min_size)
            state = store.restore(latest, target, data)
            say(f"resumed from {ckpt_dir} step {latest}")
        else:
            params = None
            if pretrained is not None:
                shards = fsdp_shardings(abstract, mesh, cfg.fsdp_min_size)
                params = load_policy_params(
                    pretrained,
                    jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shards),
                )
                say(f"fine-tuning from {pretrained}")
            state, shardings = init_train_state(model, tx, mesh, cfg.seed, cfg.fsdp_min_size, params)
    except BaseException:
        store.close()
        raise

    if effective_warmup(cfg) != cfg.warmup_steps:
        say(
            f"warm-up of {cfg.warmup_steps} steps >= the run's {cfg.num_steps}: warming up over "
            f"{effective_warmup(cfg)} steps instead, so the run reaches its peak learning rate"
        )
    parts = trained_parts(trainable)
    flops_per_step = train_flops_per_sample(model_config, parts) * cfg.batch_size
    say(
        f"{count_parameters(abstract)['total'] / 1e6:.2f}M params (training {', '.join(sorted(parts))}), "
        f"mesh {dict(mesh.shape)}, batch {cfg.batch_size} x {cfg.grad_accum_steps} micro-batch(es), "
        f"{flops_per_step / 1e12:.3g} TFLOP/step, compute {model_config.compute_dtype}{', remat' if cfg.remat else ''}"
    )
    return _Run(
        workdir,
        model_config,
        cfg,
        store,
        mesh,
        state,
        data,
        train_step=make_train_step(model, tx, cfg, trainable, learning_rate_schedule(cfg), mesh, shardings),
        eval_step=make_eval_step(model, mesh, shardings.ema_params) if evaluates else None,
        writer=MetricWriter(workdir / LOGS, enabled=pi == 0),
        flops_per_step=flops_per_step,
        peak=peak_flops(jax.devices()[0]),
        saved=latest,
        say=say,
    )


def _loop(run: _Run, start: int, eval_batches: list[dict], progress: bool) -> tuple[int, bool]:
    """Steps until num_steps or SIGTERM, checking, logging, evaluating and saving on the way; (last step,
    preempted). Ends with the last step saved and, unless preempted, a final evaluation."""
    cfg, mesh = run.cfg, run.mesh
    bar = tqdm(
        total=cfg.num_steps,
        initial=start,
        unit="step",
        dynamic_ncols=True,
        disable=not progress or jax.process_index() != 0,
    )
    last_time = time.perf_counter()

    def report(n: int, device_metrics) -> None:
        nonlocal last_time
        host = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
        if not (math.isfinite(host["loss"]) and math.isfinite(host["grad_norm"])):
            raise NonFiniteLoss(n, host, run.saved)
        now = time.perf_counter()
        dt, last_time = now - last_time, now
        host["step_time_s"] = dt
        host["samples_per_s"] = cfg.batch_size / dt
        if run.peak:
            host["mfu"] = run.flops_per_step / dt / (run.peak * mesh.size)
        run.writer.write(n, host)
        run.metrics = host
        bar.set_description("training" if n > start + 1 else "compiled")
        bar.set_postfix(loss=f"{host['loss']:.4f}", sps=f"{host['samples_per_s']:.1f}", refresh=False)
        bar.update(n - bar.n)

    def evaluate(n: int) -> None:
        assert run.eval_step is not None
        losses = [
            float(
                run.eval_step(
                    run.state.ema_params,
                    place_batch({k: b[k] for k in BATCH_KEYS}, mesh),
                    jax.random.PRNGKey(EVAL_SEED + i),
                )
            )
            for i, b in enumerate(eval_batches)
        ]
        run.writer.write(n, {"val_loss": float(np.mean(losses))})
        run.metrics["val_loss"] = float(np.mean(losses))

    step, preempted = start, False
    bar.set_description("compiling" if start < cfg.num_steps else "done")
    try:
        with preemption_flag() as stop:
            pending = None
            while step < cfg.num_steps:
                local = next(run.data)
                run.state, metrics = run.train_step(
                    run.state, place_batch({k: v for k, v in local.items() if k in TRAIN_KEYS}, mesh)
                )
                step += 1
                if pending is not None:
                    report(*pending)
                pending = (step, metrics)
                preempted = any_process(stop.is_set())  # the same answer on every host, so all save this step
                due_save = step % cfg.save_every == 0 or step == cfg.num_steps or preempted
                due_eval = run.eval_step is not None and cfg.eval_every and step % cfg.eval_every == 0
                if due_save or due_eval:
                    report(*pending)
                    pending = None
                if due_eval:
                    evaluate(step)
                if due_save:
                    run.store.save(run.state, run.data, run.model_config, cfg)
                    run.saved = step
                if preempted:
                    who = "this process" if stop.is_set() else "another process"
                    print(f"SIGTERM ({who}): process {jax.process_index()} saved step {step}, stopping", flush=True)
                    break
            if pending is not None:
                report(*pending)
        if run.saved != step:
            run.store.save(run.state, run.data, run.model_config, cfg)
        if run.eval_step is not None and not preempted and not (cfg.eval_every and step % cfg.eval_every == 0):
            evaluate(step)
    finally:
        bar.close()
    return step, preempted
