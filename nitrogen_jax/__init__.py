"""nitrogen-jax: NitroGen-style generalist game agents in JAX/Flax."""
from nitrogen_jax.actions import LAYOUTS, RELEASE_LAYOUT, SEED_LAYOUT, ActionLayout, Gamepad, get_layout
from nitrogen_jax.config import PRESETS, NitroGenConfig, TransformerConfig, VisionConfig, get_config
from nitrogen_jax.policy import Policy, count_parameters

__all__ = [
    "ActionLayout", "Gamepad", "LAYOUTS", "NitroGenConfig", "PRESETS", "Policy", "RELEASE_LAYOUT", "SEED_LAYOUT",
    "TransformerConfig", "VisionConfig", "count_parameters", "get_config", "get_layout",
]
