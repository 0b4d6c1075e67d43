"""`nitrogen-jax serve`: a policy behind the release's wire protocol, so the release's game client drives it unchanged.

ZeroMQ REQ/REP (the server's socket is a ROUTER speaking REP's envelope), one dict per message, pickled (the
release's client) or msgpack (new clients); the reply uses the request's format. Requests and replies:

    {"type": "reset"} or {"type": "reset", "seed": int}  -> {"status": "ok"}   (restarts this client's noise stream)
    {"type": "info"}                       -> {"status": "ok", "info": {...}}  (the release's keys and ours)
    {"type": "predict", "image": PIL image or uint8 (H, W, 3) RGB array}
        -> {"status": "ok", "pred": {"j_left": f32 (H_a, 2), "j_right": f32 (H_a, 2), "buttons": f32 (H_a, 21)}}
    anything else, or anything unreadable  -> {"status": "error", "message": str}

`pred` is in the release's decoded units whatever the policy's layout: sticks in [-1, 1] with y down, buttons 0/1
in the release's 21-slot alphabetical order (its 4 right-stick pseudo-buttons are always 0; no client sends them).
Images of another size are squashed to the model's with INTER_AREA, like the release's client does before sending.

Many games at once: every connected client (its ROUTER identity) has its own session: its own noise stream
(restarted by its reset, from the server's seed unless the reset names one) and its own buffer of earlier frames.
Predicts that arrive together are sampled as one batch (`BatchSampler`): the server waits at most
`batch_wait_ms` after the first for the other recently active clients' requests, up to `max_batch`.
Today's models take one frame (`context_length` 1), so the buffer holds one frame; a model config with more frames
would be fed the buffer as the release's `--ctx` does.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import zmq

from nitrogen_jax.actions import RELEASE_LAYOUT
from nitrogen_jax.frames import squash_frame
from nitrogen_jax.model import count_parameters
from nitrogen_jax.policy import Policy
from nitrogen_jax.sim_bridge.agent import check_temperature
from nitrogen_jax.sim_bridge.batch_sampler import BatchSampler
from nitrogen_jax.sim_bridge.curve_keys import secure_server_socket
from nitrogen_jax.sim_bridge.wire import CODECS, Limits, WireError, detect

log = logging.getLogger(__name__)

DEFAULT_PORT = 5555
DEFAULT_MAX_MESSAGE_BYTES = 32 << 20  # a 4K RGB frame is 25 MB; the release's client sends 256x256 (196 KB)
MAX_IMAGE_SIDE = 8192
CONTEXT_FRAMES = 1  # NitroGenConfig has no frame-count field: every model today is fed one frame
GAME_STEP_HZ = 60.0  # the release's client holds each action for 60 / action_fps steps of 1/60 s
ACTIVE_WINDOW_S = 1.0  # a client seen this recently is expected to send again soon: worth waiting for
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass
class Session:
    """One connected game: its noise stream and its earlier frames."""

    key: jax.Array
    frames: collections.deque
    last_seen: float = 0.0
    predictions: int = 0


class PolicyServer:
    """Answers reset / info / predict for one policy; `handle_many` maps a batch of requests to replies."""

    def __init__(
        self,
        policy: Policy,
        *,
        temperature: float = 1.0,
        num_steps: int | None = None,
        seed: int = 0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        codecs=("pickle", "msgpack"),
        source: str = "",
        max_batch: int = 16,
        batch_wait_ms: float = 3.0,
        max_sessions: int = 256,
        curve_keys: str | Path | None = None,
        warm_every_batch_size: bool = True,
    ):
        unknown = set(codecs) - set(CODECS)
        if unknown or not codecs:
            raise ValueError(f"codecs must be a non-empty subset of {sorted(CODECS)}, got {codecs}")
        if batch_wait_ms < 0 or max_sessions < 1:
            raise ValueError(f"batch_wait_ms must be >= 0 and max_sessions >= 1, got {batch_wait_ms}, {max_sessions}")
        self.policy = policy
        self.temperature = check_temperature(temperature)
        self.num_steps = num_steps
        self.seed = seed
        self.max_message_bytes = int(max_message_bytes)
        self.limits = Limits(max_bytes=self.max_message_bytes)
        self.codecs = tuple(codecs)
        self.source = source
        self.batch_wait_s = batch_wait_ms / 1e3
        self.max_sessions = max_sessions
        self.curve_keys = curve_keys
        self.sampler = BatchSampler(policy, temperature=self.temperature, num_steps=num_steps, max_batch=max_batch)
        self.sessions: collections.OrderedDict[bytes, Session] = collections.OrderedDict()
        self.requests = self.errors = self.batches = self.evicted = 0
        self.dropped = 0  # messages without a REQ envelope (no one to reply to)
        self._socket: zmq.Socket | None = None
        self._auth: Any = None  # the CURVE authenticator thread, when --curve-keys is given
        log.info(
            "model compiled and warm in %.2f s (batch sizes %s)",
            self.sampler.warm_up(warm_every_batch_size),
            self.sampler.buckets,
        )

    # --------------------------------------------------------------------------------- sessions
    def session(self, client: bytes) -> Session:
        """The client's session, made on first contact; the least recently seen goes when there are too many."""
        s = self.sessions.get(client)
        if s is None:
            if len(self.sessions) >= self.max_sessions:
                self.sessions.popitem(last=False)
                self.evicted += 1
            s = self.sessions[client] = Session(jax.random.key(self.seed), collections.deque(maxlen=CONTEXT_FRAMES))
        self.sessions.move_to_end(client)
        s.last_seen = time.monotonic()
        return s

    def _active_sessions(self) -> int:
        now = time.monotonic()
        return sum(1 for s in self.sessions.values() if now - s.last_seen < ACTIVE_WINDOW_S)

    # --------------------------------------------------------------------------------- requests
    def _frame(self, image) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise WireError(
                f"predict: 'image' must be a PIL image (RGB, RGBA, L) or a uint8 numpy array (H, W, 3) RGB, got {got}"
            )
        h, w = image.shape[:2]
        if not (1 <= h <= MAX_IMAGE_SIDE and 1 <= w <= MAX_IMAGE_SIDE):
            raise WireError(f"predict: image size {w}x{h} is outside 1..{MAX_IMAGE_SIDE} pixels a side")
        s = self.policy.config.vision.image_size
        return squash_frame(image, s)

    def info(self) -> dict:
        c = self.policy.config
        return {
            # the release server's keys, which its game client reads
            "ckpt_path": self.source,
            "selected_game": None,
            "old_layout": False,
            "cfg_scale": 1.0,
            "context_length": CONTEXT_FRAMES,
            "action_interleaving": False,
            "is_flowmatching": True,
            "action_downsample_ratio": max(1, round(GAME_STEP_HZ / c.action_fps)),
            # ours
            "framework": "nitrogen-jax",
            "checkpoint": self.source,
            "action_layout": c.action_layout,
            "action_fps": c.action_fps,
            "action_dim": c.action_dim,
            "action_horizon": c.action_horizon,
            "num_steps": self.num_steps or c.num_steps,
            "image_size": c.vision.image_size,
            "temperature": self.temperature,
            "seed": self.seed,
            "parameters": int(count_parameters(self.policy.params)["total"]),
            "compute_dtype": c.compute_dtype,
            "buttons": list(RELEASE_LAYOUT.button_names),
            "codecs": list(self.codecs),
            "max_message_bytes": self.max_message_bytes,
            "max_batch": self.sampler.max_batch,
        }

    def _decode(self, message: bytes):
        """-> (codec, request dict); raises WireError for anything unreadable."""
        codec = detect(message)
        if len(message) > self.max_message_bytes:
            raise WireError(f"message of {len(message)} bytes exceeds the limit of {self.max_message_bytes}")
        if codec not in self.codecs:
            raise WireError(f"{codec} messages are not accepted by this server (accepts {', '.join(self.codecs)})")
        request = CODECS[codec][0](message, self.limits)
        if not isinstance(request, dict) or not isinstance(request.get("type"), str):
            raise WireError(
                f"a request is a dict with a 'type' of reset, info or predict; got {type(request).__name__}"
            )
        return request

    def _answer(self, request: dict, session: Session) -> dict:
        """reset / info (predicts go through the batch)."""
        kind = request["type"]
        if kind == "info":
            return {"status": "ok", "info": self.info()}
        if kind == "reset":
            seed = request.get("seed", self.seed)
            if type(seed) is not int:
                raise WireError(f"reset: 'seed' must be an int, got {type(seed).__name__}")
            session.key = jax.random.key(seed)
            session.frames.clear()
            return {"status": "ok"}
        raise WireError(f"unknown request type {kind[:40]!r}; expected reset, info or predict")

    def handle_many(self, requests: list[tuple[bytes, bytes]]) -> list[bytes]:
        """[(client id, request bytes)] -> reply bytes in the same order. Never raises.

        Predicts are sampled together; a client's later request in the same list waits for its earlier predict.
        """
        replies: list[dict | None] = [None] * len(requests)
        codecs: list[str] = []
        batch: list[tuple[int, Session]] = []
        for i, (client, message) in enumerate(requests):
            self.requests += 1
            codecs.append(detect(message))
            session = self.session(client)
            try:
                request = self._decode(message)
                if any(s is session for _, s in batch):
                    self._sample(batch, replies)
                if request["type"] == "predict":
                    if "image" not in request:
                        raise WireError("predict: the request has no 'image'")
                    session.frames.append(self._frame(request["image"]))
                    batch.append((i, session))
                    if len(batch) == self.sampler.max_batch:
                        self._sample(batch, replies)
                else:
                    replies[i] = self._answer(request, session)
            except WireError as e:
                replies[i] = self._error(str(e))
            except Exception as e:  # a bug must cost one request, not the server
                log.exception("request failed")
                replies[i] = self._error(f"internal error: {type(e).__name__}: {e}")
        self._sample(batch, replies)
        return [CODECS[c][1](r) for c, r in zip(codecs, replies, strict=True)]

    def _sample(self, batch: list[tuple[int, Session]], replies: list) -> None:
        if not batch:
            return
        try:
            frames = np.stack([s.frames[-1] for _, s in batch])  # the last of CONTEXT_FRAMES frames
            preds, keys = self.sampler.sample(frames, [s.key for _, s in batch])
            self.batches += 1
            for (i, s), pred, key in zip(batch, preds, keys, strict=True):
                s.key, s.predictions, replies[i] = key, s.predictions + 1, {"status": "ok", "pred": pred}
        except Exception as e:
            log.exception("sampling failed")
            for i, _ in batch:
                replies[i] = self._error(f"internal error: {type(e).__name__}: {e}")
        batch.clear()

    def handle(self, message: bytes, client: bytes = b"") -> bytes:
        """One request alone (a batch of one) -> reply bytes."""
        return self.handle_many([(client, message)])[0]

    def _error(self, message: str) -> dict:
        self.errors += 1
        log.info("error reply: %s", message)
        return {"status": "error", "message": message}

    # --------------------------------------------------------------------------------- transport
    def bind(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> str:
        """Bind the socket; port 0 picks a free one. Returns the endpoint.

        A ROUTER socket speaking REP's envelope: REQ clients see a REP server, but a peer that sends broken
        envelopes (or raw TCP bytes) cannot desynchronise the replies to the others, as it can with REP; and the
        routing identity names the client's session.
        """
        sock: zmq.Socket = zmq.Context.instance().socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # Beyond twice the limit the transport drops the connection without buffering the message.
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes)
        if self.curve_keys is not None:
            self._auth = secure_server_socket(sock, self.curve_keys)
        elif host not in LOCAL_HOSTS:
            print(
                f"WARNING: serving on {host}:{port} without --curve-keys: anyone who can reach this port can send "
                f"requests, and pickle messages are unauthenticated (they are read by a restricted reader, never "
                f"unpickled, but firewall the port to the game machine or use an SSH tunnel)",
                file=sys.stderr,
            )
        sock.bind(f"tcp://{host}:{port}" if port else f"tcp://{host}:*")
        self._socket = sock
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def _receive(self, pending: list, envelopes: list) -> None:
        sock = self._socket
        assert sock is not None, "bind() before receiving"
        parts = sock.recv_multipart(zmq.NOBLOCK)
        if b"" not in parts[1:]:  # not a REQ envelope (routing id, empty frame, body): nobody to answer
            self.dropped += 1
            return
        split = parts.index(b"", 1) + 1
        envelope, body = parts[:split], parts[split:]
        if len(body) != 1:
            head = body[0] if body else b""
            sock.send_multipart(
                [*envelope, CODECS[detect(head)][1](self._error(f"a request is one message part, got {len(body)}"))]
            )
            return
        pending.append((parts[0], body[0]))
        envelopes.append(envelope)

    def serve(self, stop: threading.Event | None = None, poll_ms: int = 100) -> None:
        """Answer requests until `stop` is set (or forever), batching the ones that arrive together."""
        if self._socket is None:
            raise RuntimeError("bind() before serve()")
        sock = self._socket
        while stop is None or not stop.is_set():
            if not sock.poll(poll_ms):
                continue
            pending: list[tuple[bytes, bytes]] = []
            envelopes: list[list[bytes]] = []
            want = min(self.sampler.max_batch, max(1, self._active_sessions()))
            deadline = time.monotonic() + self.batch_wait_s
            while len(pending) < self.sampler.max_batch:
                try:
                    self._receive(pending, envelopes)
                    continue
                except zmq.Again:
                    pass
                left = deadline - time.monotonic()
                if len(pending) >= want or left <= 0 or not sock.poll(max(1, int(left * 1e3))):
                    break
            for envelope, reply in zip(envelopes, self.handle_many(pending), strict=True):
                sock.send_multipart([*envelope, reply])

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
