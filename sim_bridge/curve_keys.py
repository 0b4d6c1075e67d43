"""ZeroMQ CURVE keys for `serve --curve-keys DIR`: only clients whose public key is in DIR/clients/ get an answer.

CURVE encrypts the connection and authenticates the client before any message reaches the server; a client
without an authorised key is dropped by ZeroMQ's handshake (it simply gets no reply). The release's game client
does not speak CURVE: keys are for our own clients (`PolicyClient(..., curve=ClientKeys(...))`) across networks.

Layout of DIR (what `make_curve_keys` writes, with zmq.auth.create_certificates):

    DIR/server.key, DIR/server.key_secret          the server's pair (the public half goes to every client)
    DIR/clients/NAME.key, DIR/clients/NAME.key_secret   one pair per client (give NAME.key_secret to that client)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tyro
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

SERVER_NAME = "server"
CLIENTS_DIR = "clients"


@dataclasses.dataclass(frozen=True)
class ClientKeys:
    """What a client needs: its own key pair and the server's public key."""

    secret_file: Path
    server_public_file: Path


def make_curve_keys(directory: str | Path, clients: tuple[str, ...] = ("client",)) -> dict[str, ClientKeys]:
    """Create the server's key pair and one pair per client name; returns each client's `ClientKeys`."""
    root = Path(directory)
    (root / CLIENTS_DIR).mkdir(parents=True, exist_ok=True)
    server_public, _ = zmq.auth.create_certificates(root, SERVER_NAME)
    out = {}
    for name in clients:
        _, secret = zmq.auth.create_certificates(root / CLIENTS_DIR, name)
        out[name] = ClientKeys(Path(secret), Path(server_public))
    return out


def secure_server_socket(sock: zmq.Socket, directory: str | Path) -> ThreadAuthenticator:
    """Make `sock` a CURVE server that admits only DIR/clients/*.key; returns the running authenticator (stop it)."""
    root = Path(directory)
    secret_file, clients = root / f"{SERVER_NAME}.key_secret", root / CLIENTS_DIR
    if not secret_file.is_file():
        raise FileNotFoundError(f"--curve-keys {root}: no {secret_file.name} (make one with make_curve_keys)")
    if not any(clients.glob("*.key")):
        raise FileNotFoundError(f"--curve-keys {root}: no client public keys in {clients}/*.key; nobody could connect")
    auth = ThreadAuthenticator(zmq.Context.instance())
    auth.start()
    auth.configure_curve(domain="*", location=str(clients))
    public, secret = zmq.auth.load_certificate(secret_file)
    sock.curve_publickey, sock.curve_secretkey, sock.curve_server = public, secret, True
    return auth


def secure_client_socket(sock: zmq.Socket, keys: ClientKeys) -> None:
    """Make `sock` a CURVE client of the server whose public key is in `keys` (before connect)."""
    public, secret = zmq.auth.load_certificate(keys.secret_file)
    server_public, _ = zmq.auth.load_certificate(keys.server_public_file)
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public


@dataclasses.dataclass(frozen=True)
class CurveKeysArgs:
    """Create ZeroMQ CURVE keys for `serve --curve-keys DIR`: the server's pair and one pair per client."""

    directory: tyro.conf.Positional[Path]
    """Where to write server.key[_secret] and clients/NAME.key[_secret]."""
    clients: tuple[str, ...] = ("client",)
    """Client names; give each client its clients/NAME.key_secret and server.key."""

    def run(self) -> int:
        for name, keys in make_curve_keys(self.directory, self.clients).items():
            print(f"{name}: {keys.secret_file} (with {keys.server_public_file})")
        print(f"serve with: nitrogen-jax serve --curve-keys {self.directory}")
        return 0
