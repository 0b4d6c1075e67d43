"""`nitrogen-jax serve`: a policy behind the release's wire protocol, so the release's game client drives it unchanged.

ZeroMQ REQ/REP (the server's socket is a ROUTER speaking REP's envelope), one dict per message, pickled (the release's client) or msgpack (new clients); the reply uses the
request's format. Requests and replies:

    {"type": "reset"}                      -> {"status": "ok"}            (restarts the sampling noise stream)
    {"type": "info"}                       -> {"status": "ok", "info": {...}}
    {"type": "predict", "image": uint8 (H, W, 3) RGB}
        -> {"status": "ok", "pred": {"j_left": f32 (H_a, 2), "j_right": f32 (H_a, 2), "buttons": f32 (H_a, 21)}}
    anything else, or anything unreadable  -> {"status": "error", "message": str}

`pred` is in the release's decoded units whatever the policy's layout: sticks in [-1, 1] with y down, buttons 0/1
in the release's 21-slot alphabetical order (its 4 right-stick pseudo-buttons are always 0; no client sends them).
Images of another size are squashed to the model's with INTER_AREA, like the release's client does before sending.
The server binds 127.0.0.1 unless told otherwise, refuses messages over `max_message_bytes` with an error reply,
and compiles and runs the model once before it accepts the first request.
"""
from __future__ import annotations

import logging
import threading
import time

import cv2
import jax
import numpy as np
import zmq

from nitrogen_jax.actions import RELEASE_LAYOUT
from nitrogen_jax.policy import Policy, count_parameters
from nitrogen_jax.sim_bridge.agent import check_temperature
from nitrogen_jax.sim_bridge.wire import CODECS, WireError, detect

log = logging.getLogger(__name__)

DEFAULT_PORT = 5555
DEFAULT_MAX_MESSAGE_BYTES = 32 << 20  # a 4K RGB frame is 25 MB; the release's client sends 256x256 (196 KB)
MAX_IMAGE_SIDE = 8192
RELEASE_BUTTON_SLOTS = len(RELEASE_LAYOUT.button_names)


class PolicyServer:
    """Answers reset / info / predict for one policy; `handle` maps request bytes to reply bytes."""

    def __init__(self, policy: Policy, *, temperature: float = 1.0, num_steps: int | None = None, seed: int = 0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, codecs=("pickle", "msgpack"), source: str = ""):
        unknown = set(codecs) - set(CODECS)
        if unknown or not codecs:
            raise ValueError(f"codecs must be a non-empty subset of {sorted(CODECS)}, got {codecs}")
        self.policy = policy
        self.temperature = check_temperature(temperature)
        self.num_steps = num_steps
        self.seed = seed
        self.max_message_bytes = int(max_message_bytes)
        self.codecs = tuple(codecs)
        self.source = source
        self.requests = 0
        self.errors = 0
        self.dropped = 0  # messages without a REQ envelope (no one to reply to)
        self._rng = jax.random.key(seed)
        self._socket: zmq.Socket | None = None
        self._warm_up()

    # --------------------------------------------------------------------------------- requests
    def _warm_up(self) -> None:
        s = self.policy.config.vision.image_size
        t0 = time.perf_counter()
        self._predict(np.zeros((s, s, 3), np.uint8), jax.random.key(0))
        log.info("model compiled and warm in %.2f s", time.perf_counter() - t0)

    def _predict(self, frame: np.ndarray, rng) -> dict:
        chunk = self.policy.sample(frame[None], rng=rng, num_steps=self.num_steps, temperature=self.temperature)
        pad = self.policy.config.layout.decode(np.asarray(chunk)[0])
        buttons = RELEASE_LAYOUT.encode(pad)[:, :RELEASE_BUTTON_SLOTS]
        return {"j_left": pad.j_left, "j_right": pad.j_right, "buttons": buttons}

    def _frame(self, image) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise WireError(f"predict: 'image' must be a uint8 numpy array (H, W, 3) RGB, got {got}")
        h, w = image.shape[:2]
        if not (1 <= h <= MAX_IMAGE_SIDE and 1 <= w <= MAX_IMAGE_SIDE):
            raise WireError(f"predict: image size {w}x{h} is outside 1..{MAX_IMAGE_SIDE} pixels a side")
        s = self.policy.config.vision.image_size
        return image if (h, w) == (s, s) else cv2.resize(image, (s, s), interpolation=cv2.INTER_AREA)

    def info(self) -> dict:
        c = self.policy.config
        return {
            "framework": "nitrogen-jax", "checkpoint": self.source, "action_layout": c.action_layout,
            "action_dim": c.action_dim, "action_horizon": c.action_horizon, "num_steps": self.num_steps or c.num_steps,
            "image_size": c.vision.image_size, "temperature": self.temperature, "seed": self.seed,
            "parameters": int(count_parameters(self.policy.params)["total"]), "compute_dtype": c.compute_dtype,
            "buttons": list(RELEASE_LAYOUT.button_names), "codecs": list(self.codecs),
            "max_message_bytes": self.max_message_bytes,
        }

    def respond(self, request) -> dict:
        """One decoded request -> the reply dict (raises WireError for a bad request)."""
        if not isinstance(request, dict) or not isinstance(request.get("type"), str):
            raise WireError(f"a request is a dict with a 'type' of reset, info or predict; got {type(request).__name__}")
        kind = request["type"]
        if kind == "predict":
            if "image" not in request:
                raise WireError("predict: the request has no 'image'")
            self._rng, rng = jax.random.split(self._rng)
            return {"status": "ok", "pred": self._predict(self._frame(request["image"]), rng)}
        if kind == "info":
            return {"status": "ok", "info": self.info()}
        if kind == "reset":
            self._rng = jax.random.key(self.seed)
            return {"status": "ok"}
        raise WireError(f"unknown request type {kind[:40]!r}; expected reset, info or predict")

    def handle(self, message: bytes) -> bytes:
        """Request bytes -> reply bytes. Never raises: every failure becomes an error reply."""
        self.requests += 1
        codec = detect(message)
        loads, dumps = CODECS[codec]
        try:
            if len(message) > self.max_message_bytes:
                raise WireError(f"message of {len(message)} bytes exceeds the limit of {self.max_message_bytes}")
            if codec not in self.codecs:
                raise WireError(f"{codec} messages are not accepted by this server (accepts {', '.join(self.codecs)})")
            reply = self.respond(loads(message))
        except WireError as e:
            reply = self._error(str(e))
        except Exception as e:  # a bug must cost one request, not the server
            log.exception("request failed")
            reply = self._error(f"internal error: {type(e).__name__}: {e}")
        return dumps(reply)

    def _error(self, message: str) -> dict:
        self.errors += 1
        log.info("error reply: %s", message)
        return {"status": "error", "message": message}

    # --------------------------------------------------------------------------------- transport
    def bind(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> str:
        """Bind the socket; port 0 picks a free one. Returns the endpoint.

        A ROUTER socket speaking REP's envelope: REQ clients see a REP server, but a peer that sends broken
        envelopes (or raw TCP bytes) cannot desynchronise the replies to the others, as it can with REP.
        """
        sock = zmq.Context.instance().socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # Beyond twice the limit the transport drops the connection without buffering the message.
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes)
        sock.bind(f"tcp://{host}:{port}" if port else f"tcp://{host}:*")
        self._socket = sock
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def serve(self, stop: threading.Event | None = None, poll_ms: int = 100) -> None:
        """Answer requests until `stop` is set (or forever)."""
        if self._socket is None:
            raise RuntimeError("bind() before serve()")
        while stop is None or not stop.is_set():
            if not self._socket.poll(poll_ms):
                continue
            parts = self._socket.recv_multipart()
            if b"" not in parts[1:]:  # not a REQ envelope (routing ids, empty frame, body): nobody to answer
                self.dropped += 1
                continue
            split = parts.index(b"", 1) + 1
            envelope, body = parts[:split], parts[split:]
            if len(body) == 1:
                reply = self.handle(body[0])
            else:
                head = body[0] if body else b""
                reply = CODECS[detect(head)][1](self._error(f"a request is one message part, got {len(body)}"))
            self._socket.send_multipart([*envelope, reply])

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
