"""A client of the release's wire protocol (pickle or msgpack), for Linux game loops, tests and benchmarks.

Replies are read with the same whitelist as the server reads requests: a client trusts its server no more than
the server trusts it.
"""

from __future__ import annotations

import numpy as np
import zmq

from nitrogen_jax.sim_bridge.curve_keys import ClientKeys, secure_client_socket
from nitrogen_jax.sim_bridge.wire import CODECS

RECEIVE_TIMEOUT_S = 30.0  # the release's client waits as long


class ServerError(RuntimeError):
    """The server answered {"status": "error", "message": ...}."""


class PolicyClient:
    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5555",
        codec: str = "pickle",
        timeout_s: float = RECEIVE_TIMEOUT_S,
        curve: ClientKeys | None = None,
    ):
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
        self._loads, self._dumps = CODECS[codec]
        self._socket: zmq.Socket = zmq.Context.instance().socket(zmq.REQ)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
        if curve is not None:  # a server started with --curve-keys answers only clients holding an authorised key
            secure_client_socket(self._socket, curve)
        self._socket.connect(endpoint)
        self.endpoint = endpoint

    def request(self, message: dict) -> dict:
        self._socket.send(self._dumps(message))
        try:
            reply = self._loads(self._socket.recv())
        except zmq.Again:
            raise TimeoutError(f"no reply from {self.endpoint} within the receive timeout") from None
        if not isinstance(reply, dict) or reply.get("status") != "ok":
            raise ServerError(reply.get("message") if isinstance(reply, dict) else f"malformed reply {reply!r:.200}")
        return reply

    def reset(self, seed: int | None = None) -> None:
        """Restart this client's noise stream (from the server's seed, or `seed`)."""
        self.request({"type": "reset"} if seed is None else {"type": "reset", "seed": seed})

    def info(self) -> dict:
        return self.request({"type": "info"})["info"]

    def predict(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 (H, W, 3) RGB -> {"j_left", "j_right", "buttons"} in the release's decoded units."""
        return self.request({"type": "predict", "image": image})["pred"]

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
