"""`Policy`: the public face of the model. A config plus float32 params, and two verbs, `velocity` and `sample`.

A facade over the model layer's pure functions (`nitrogen_jax.model`): everything a caller passes is checked here,
before any tracing, so a wrong shape or dtype is reported in the caller's terms rather than as an XLA error; and the
policy's file format (orbax params + config.json) and the importers' entry points live here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nitrogen_jax.config import NitroGenConfig, get_config
from nitrogen_jax.flow import time_bucket
from nitrogen_jax.model import NitroGenModel, abstract_params, count_parameters, init_params, make_sampler

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


class Policy:
    """A NitroGen policy: `sample` action chunks from frames, or evaluate the flow `velocity`.

    Parameters are float32; `config.compute_dtype` ("float32" or "bfloat16") sets the compute precision.
    """

    def __init__(self, config: NitroGenConfig, params, seed: int = 0):
        self.config = config
        self.params = params
        self.model = NitroGenModel(config)
        self._samplers: dict[int, Any] = {}
        self._velocity = jax.jit(lambda p, f, a, b: self.model.apply({"params": p}, f, a, b))
        self._rng = jax.random.key(seed)

    # ----------------------------------------------------------------- construction
    @classmethod
    def init(cls, config: str | NitroGenConfig = "tiny", seed: int = 0, **overrides) -> Policy:
        """Random weights for a preset name or config; overrides replace config fields (e.g. compute_dtype)."""
        cfg = get_config(config, **overrides)
        return cls(cfg, init_params(cfg, jax.random.key(seed)), seed=seed)

    @classmethod
    def from_release_checkpoint(cls, path: str | os.PathLike, **options) -> Policy:
        """Import the public release's `ng.pt` (or a smaller checkpoint of its family); see convert.release."""
        from nitrogen_jax.convert.release import load_release_checkpoint

        config, params, _ = load_release_checkpoint(path, **options)
        return cls(config, params)

    @classmethod
    def from_siglip(
        cls, config: str | NitroGenConfig, directory: str | os.PathLike, seed: int = 0, **overrides
    ) -> Policy:
        """Random weights for `config` except the vision tower, read from a transformers SigLIP directory (the start
        of pretraining); see convert.siglip."""
        from nitrogen_jax.convert.siglip import init_from_siglip

        cfg, params = init_from_siglip(config, directory, seed=seed, **overrides)
        return cls(cfg, params, seed=seed)

    def with_compute_dtype(self, dtype: str) -> Policy:
        return Policy(self.config.replace(compute_dtype=dtype), self.params)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write params (orbax) and config.json beside them; a directory `Policy.load` reads back."""
        import orbax.checkpoint as ocp

        directory = Path(directory).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(directory / PARAMS_DIR, jax.device_get(self.params), force=True)
        ckptr.wait_until_finished()
        (directory / CONFIG_FILE).write_text(self.config.to_json())
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, **overrides) -> Policy:
        import orbax.checkpoint as ocp

        directory = Path(directory).absolute()
        cfg_file = directory / CONFIG_FILE
        if not cfg_file.is_file() or not (directory / PARAMS_DIR).is_dir():
            raise FileNotFoundError(
                f"{directory} is not a saved Policy: expected {CONFIG_FILE} and {PARAMS_DIR}/ in it"
            )
        cfg = NitroGenConfig.from_dict(json.loads(cfg_file.read_text()))
        cfg = cfg.replace(**overrides) if overrides else cfg
        params = ocp.StandardCheckpointer().restore(directory / PARAMS_DIR, abstract_params(cfg))
        return cls(cfg, params)

    # ----------------------------------------------------------------- verbs
    def velocity(self, frames, actions, t) -> jax.Array:
        """frames uint8 [B,S,S,3] RGB; actions float32 [B,H,A]; t float32 [B] in [0, 1] -> velocity float32 [B,H,A]."""
        frames = self._check_frames(frames)
        b = frames.shape[0]
        actions = self._check_actions(actions, b, "actions")
        t = np.asarray(t, np.float32)
        if t.shape != (b,):
            raise ValueError(f"t must be float32 [B={b}], got shape {t.shape}")
        if not np.all(np.isfinite(t)) or np.any((t < 0) | (t > 1)):
            raise ValueError(f"t must be finite and in [0, 1], got {t.tolist()}")
        return self._velocity(self.params, frames, actions, time_bucket(t, self.config.num_timestep_buckets))

    def sample(self, frames, noise=None, rng=None, num_steps: int | None = None, temperature: float = 1.0) -> jax.Array:
        """Sample an action chunk float32 [B,H,A] (raw model units of the config's action layout).

        noise: the initial x_0 [B,H,A] (deterministic output given it); else drawn from `rng` (or the policy's own
        key stream) and scaled by `temperature`.
        """
        frames = self._check_frames(frames)
        b, h, a = frames.shape[0], self.config.action_horizon, self.config.action_dim
        if noise is None:
            if rng is None:
                self._rng, rng = jax.random.split(self._rng)
            noise = jnp.float32(temperature) * jax.random.normal(rng, (b, h, a), jnp.float32)
        else:
            noise = self._check_actions(noise, b, "noise")
        steps = self.config.num_steps if num_steps is None else int(num_steps)
        if steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if steps not in self._samplers:
            self._samplers[steps] = make_sampler(self.model, steps)
        return self._samplers[steps](self.params, frames, noise)

    # ----------------------------------------------------------------- checks
    def _check_frames(self, frames):
        s = self.config.vision.image_size
        shape, dtype = getattr(frames, "shape", None), getattr(frames, "dtype", None)
        if shape is None or len(shape) != 4 or tuple(shape[1:]) != (s, s, 3) or dtype != np.uint8:
            raise ValueError(
                f"frames must be uint8 [B, {s}, {s}, 3] RGB, got {dtype} {tuple(shape) if shape else type(frames).__name__}"
            )
        return frames

    def _check_actions(self, actions, batch: int, what: str):
        h, a = self.config.action_horizon, self.config.action_dim
        arr = jnp.asarray(actions)
        if arr.shape != (batch, h, a) or not jnp.issubdtype(arr.dtype, jnp.floating):
            raise ValueError(
                f"{what} must be float32 [B={batch}, H={h}, A={a}] ({self.config.action_layout} layout), "
                f"got {arr.dtype} {arr.shape}"
            )
        return arr.astype(jnp.float32)

    def __repr__(self) -> str:
        n = count_parameters(self.params)["total"]
        c = self.config
        return (
            f"Policy({n / 1e6:.2f}M params, layout={c.action_layout}, horizon={c.action_horizon}, "
            f"steps={c.num_steps}, compute={c.compute_dtype})"
        )
