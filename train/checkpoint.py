"""Checkpoints: one orbax `CheckpointManager` step holds everything needed to resume bit for bit.

Items of a step: `state` (params, EMA, optimiser state, step, rng; sharded arrays, saved asynchronously),
`data` (the Grain iterator's position, one file per process), `model_config` and `train_config` (JSON).
Orbax writes a step into a temporary folder and renames it when complete (in a bucket, where folders cannot be
renamed: writes `commit_success.txt` last), so a step cut off mid-write (SIGKILL, power loss) is never listed and
a resumed run starts from the last complete one. The directory may be `gs://` or `s3://` (train/object_store.py).

For serving, `export_policy` writes the EMA params alone as a `Policy.save` directory.
"""

from __future__ import annotations

from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp

from nitrogen_jax.config import NitroGenConfig
from nitrogen_jax.policy import CONFIG_FILE, PARAMS_DIR, Policy
from nitrogen_jax.train.config import TrainConfig
from nitrogen_jax.train.object_store import atomicity_options, checkpoint_path
from nitrogen_jax.train.state import TrainState

STATE, DATA, MODEL_CONFIG, TRAIN_CONFIG = "state", "data", "model_config", "train_config"
# Fields that do not change the parameter tree: a checkpoint may be resumed or fine-tuned with other values
# (action_shift is checked against the data instead: `alignment_mismatch` warns).
NON_ARCHITECTURE_FIELDS = ("compute_dtype", "num_steps", "action_shift")


class CheckpointStore:
    """The run's orbax `CheckpointManager` over a local folder or a bucket (`gs://...`, `s3://...`)."""

    def __init__(self, directory: str | Path, keep: int = 3, async_save: bool = True):
        self.directory = checkpoint_path(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                enable_async_checkpointing=async_save,
                create=True,
                atomicity_options=atomicity_options(directory),
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, data_iterator, model_config: NitroGenConfig, train_config: TrainConfig) -> None:
        """Start saving; returns once the arrays are copied to host (training may go on while they are written)."""
        items = {
            STATE: ocp.args.StandardSave(state),
            MODEL_CONFIG: ocp.args.JsonSave(model_config.to_dict()),
            TRAIN_CONFIG: ocp.args.JsonSave(train_config.to_dict()),
        }
        if data_iterator is not None:
            items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
        self.manager.save(int(jax.device_get(state.step)), args=ocp.args.Composite(**items), force=True)

    def read_configs(self, step: int) -> tuple[NitroGenConfig, TrainConfig]:
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(**{MODEL_CONFIG: ocp.args.JsonRestore(), TRAIN_CONFIG: ocp.args.JsonRestore()}),
        )
        return NitroGenConfig.from_dict(out[MODEL_CONFIG]), TrainConfig.from_dict(_tuples(out[TRAIN_CONFIG]))

    def restore(self, step: int, abstract_state: TrainState, data_iterator) -> TrainState:
        """The state of `step` laid out as `abstract_state` (ShapeDtypeStructs with shardings); the data
        iterator is moved to where it stood at that step."""
        items = {STATE: ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
        return self.manager.restore(step, args=ocp.args.Composite(**items))[STATE]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _tuples(d: dict) -> dict:
    """JSON lists back to the tuples TrainConfig holds."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def architecture_mismatch(a: NitroGenConfig, b: NitroGenConfig) -> list[str]:
    """'field: a != b' for every architecture field that differs (flattened, e.g. 'vision.width')."""

    def flat(cfg):
        out = {}
        for k, v in cfg.to_dict().items():
            if k in NON_ARCHITECTURE_FIELDS:
                continue
            if isinstance(v, dict):
                out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
            else:
                out[k] = v
        return out

    fa, fb = flat(a), flat(b)
    return [f"{k}: {fa.get(k)!r} != {fb.get(k)!r}" for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def check_same_architecture(expected: NitroGenConfig, found: NitroGenConfig, where: str) -> None:
    diff = architecture_mismatch(expected, found)
    if diff:
        raise ValueError(
            f"{where} is a checkpoint of another architecture than the one asked for "
            f"(asked != checkpoint): " + "; ".join(diff)
        )


def policy_dir(path: str | Path) -> Path:
    """A `Policy.save` directory, or a training output directory holding one under `policy/`."""
    path = Path(path).absolute()
    for candidate in (path, path / "policy"):
        if (candidate / CONFIG_FILE).is_file() and (candidate / PARAMS_DIR).is_dir():
            return candidate
    raise FileNotFoundError(
        f"{path} is neither a Policy directory ({CONFIG_FILE} + {PARAMS_DIR}/, from "
        f"`nitrogen-jax convert` or an export) nor a training output with policy/ in it"
    )


def read_policy_config(path: str | Path) -> NitroGenConfig:
    return NitroGenConfig.from_json((policy_dir(path) / CONFIG_FILE).read_text())


def load_policy_params(path: str | Path, abstract_params):
    """Params of a Policy directory restored straight into the shardings of `abstract_params`."""
    return ocp.StandardCheckpointer().restore(policy_dir(path) / PARAMS_DIR, abstract_params)


def export_policy(model_config: NitroGenConfig, ema_params, directory: str | Path) -> Path:
    """The EMA params (gathered to every process) and the config as a Policy directory for serving."""
    replicated = jax.jit(
        lambda p: p,
        out_shardings=jax.sharding.NamedSharding(
            jax.tree.leaves(ema_params)[0].sharding.mesh, jax.sharding.PartitionSpec()
        ),
    )(ema_params)
    return Policy(model_config, replicated).save(directory)
