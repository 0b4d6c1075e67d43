"""nitrogen-jax: NitroGen-style generalist game agents in JAX/Flax.

The top-level names load lazily (PEP 562), so that `import nitrogen_jax.data` in a Beam worker, or the serving
client on a machine without an accelerator, does not pay for importing jax and flax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ActionLayout": "nitrogen_jax.actions",
    "Gamepad": "nitrogen_jax.actions",
    "LAYOUTS": "nitrogen_jax.actions",
    "RELEASE_LAYOUT": "nitrogen_jax.actions",
    "SEED_LAYOUT": "nitrogen_jax.actions",
    "get_layout": "nitrogen_jax.actions",
    "NitroGenConfig": "nitrogen_jax.config",
    "PRESETS": "nitrogen_jax.config",
    "TransformerConfig": "nitrogen_jax.config",
    "VisionConfig": "nitrogen_jax.config",
    "get_config": "nitrogen_jax.config",
    "count_parameters": "nitrogen_jax.model",
    "Policy": "nitrogen_jax.policy",
}
__all__ = [
    "LAYOUTS",
    "PRESETS",
    "RELEASE_LAYOUT",
    "SEED_LAYOUT",
    "ActionLayout",
    "Gamepad",
    "NitroGenConfig",
    "Policy",
    "TransformerConfig",
    "VisionConfig",
    "count_parameters",
    "get_config",
    "get_layout",
]

if TYPE_CHECKING:
    from nitrogen_jax.actions import LAYOUTS, RELEASE_LAYOUT, SEED_LAYOUT, ActionLayout, Gamepad, get_layout
    from nitrogen_jax.config import PRESETS, NitroGenConfig, TransformerConfig, VisionConfig, get_config
    from nitrogen_jax.model import count_parameters
    from nitrogen_jax.policy import Policy


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nitrogen_jax' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
