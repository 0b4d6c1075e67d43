"""Preemption: SIGTERM on any host stops every host at the same step, after saving it.

A pod's scheduler may signal one host (a maintenance event) or all of them at slightly different times. If each
host stopped on its own flag, one would leave the step loop while the others wait in the next step's collectives
(a hang), and hosts could save different steps. So the local flags are combined at every step boundary with a
tiny all-gather, and every host acts on the combined answer, which is the same everywhere.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import jax
import numpy as np


@contextlib.contextmanager
def preemption_flag() -> Iterator[threading.Event]:
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


def any_process(local: bool) -> bool:
    """True on every process when `local` is True on at least one (a collective: all processes must call it at
    the same point). A single process answers without communicating."""
    if jax.process_count() == 1:
        return local
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.array([local], dtype=np.int32))))
