"""Shared by the sim bridge's tests: one tiny random-weight policy per test session (init + compile take seconds)."""

import functools

from nitrogen_jax import Policy


@functools.cache
def tiny_policy() -> Policy:
    return Policy.init("tiny", seed=0)
