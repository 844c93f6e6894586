"""Who may talk to the mesh's sockets: private ipc on one host, CURVE on every TCP link.

Pattern: "Ironhouse" (pyzmq's examples/security/ironhouse.py). Every process has a key pair;
servers (the processes that bind) accept only clients whose public key is allow-listed,
through a ZAP authenticator living in the same context and started before the first bind.

- `ipc://` endpoints live in the private run directory (`<data_dir>/run`, mode 0700): no
  other local user can even reach them.
- Any `tcp://` endpoint is CURVE: the binding side is a CURVE server with the mesh's server
  key and `ZAP_ENFORCE_DOMAIN` (without it, a CURVE server with no ZAP handler accepts every
  client key: fail closed instead); the connecting side is a CURVE client with this host's
  key pair and the server's public key.

Keys come from the key directory (`key_dir`, default `<data_dir>/keys`), made by
`ingest keys` (zmq.auth.create_certificates):

    server.key, server.key_secret   the mesh's server pair (every binding process)
    client.key, client.key_secret   this host's client pair (every connecting process)
    authorized/*.key                the client public keys servers accept

Revoking a key (deleting it from authorized/) takes effect for new handshakes at once;
connections already up stay up until they reconnect, so `ingest keys revoke` restarts the
binding processes, which drops every connection (docs/trust.md).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import zmq
import zmq.auth
import zmq.auth.thread

ZAP_DOMAIN = "ingest-mesh"
SERVER = "server"
CLIENT = "client"
AUTHORIZED = "authorized"


class SecurityError(RuntimeError):
    """Keys or directories are missing or unsafe; the message says which and what to do."""


def is_tcp(endpoint: str) -> bool:
    return endpoint.startswith("tcp://")


def ensure_private_dir(path: Path) -> Path:
    """Create `path` as a directory only its owner can enter (0700), or check it is one."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise SecurityError(f"{path} belongs to uid {info.st_uid}, not to this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)  # an existing folder from an older version: close it
    return path


def generate_keys(key_dir: Path, name: str = CLIENT) -> Path:
    """Create the server pair (if missing) and a client pair called `name`, and authorize the
    client's public key. Returns the client's public key file. Secret files are 0600."""
    ensure_private_dir(key_dir)
    authorized = ensure_private_dir(key_dir / AUTHORIZED)
    if not (key_dir / f"{SERVER}.key_secret").exists():
        zmq.auth.create_certificates(str(key_dir), SERVER)
    if (key_dir / f"{name}.key_secret").exists():
        raise SecurityError(f"a key pair named {name!r} exists already in {key_dir}")
    public, secret = zmq.auth.create_certificates(str(key_dir), name)
    for path in (key_dir / f"{SERVER}.key_secret", Path(secret)):
        os.chmod(path, 0o600)
    shutil.copy(public, authorized / f"{name}.key")
    return Path(public)


def revoke_key(key_dir: Path, name: str) -> None:
    """Remove a client's public key from the allow-list."""
    path = key_dir / AUTHORIZED / f"{name}.key"
    if not path.exists():
        raise SecurityError(f"no authorized key named {name!r} in {path.parent}")
    path.unlink()


class MeshSecurity:
    """Applies the mesh's rules to the sockets of one ZeroMQ context.

    Plain ipc sockets need nothing (the run directory guards them); a tcp socket becomes a
    CURVE server or client. The authenticator is started on the first CURVE server, before
    its bind, in this same context (one in another context would not be consulted).
    """

    def __init__(self, context: zmq.Context, key_dir: Path, client_name: str = CLIENT) -> None:
        self._context = context
        self._key_dir = key_dir
        self._client_name = client_name
        self._authenticator: zmq.auth.thread.ThreadAuthenticator | None = None

    def server(self, socket: zmq.Socket) -> None:
        """Make `socket` (about to bind a tcp endpoint) a CURVE server, failing closed."""
        if socket.context is not self._context:
            # An authenticator in another context is never asked: every key would get in.
            raise SecurityError("the socket and the authenticator must share one context")
        public, secret = self._pair(SERVER)
        self._start_authenticator()
        socket.curve_publickey = public
        socket.curve_secretkey = secret
        socket.curve_server = True
        socket.zap_domain = ZAP_DOMAIN.encode()
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)

    def client(self, socket: zmq.Socket) -> None:
        """Make `socket` (about to connect to a tcp endpoint) a CURVE client of the mesh."""
        public, secret = self._pair(self._client_name)
        server_public, _ = self._pair(SERVER, secret_needed=False)
        socket.curve_publickey = public
        socket.curve_secretkey = secret
        socket.curve_serverkey = server_public

    def close(self) -> None:
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None

    def _start_authenticator(self) -> None:
        if self._authenticator is not None:
            return
        authorized = self._key_dir / AUTHORIZED
        if not authorized.is_dir() or not any(authorized.glob("*.key")):
            raise SecurityError(
                f"no authorized client keys in {authorized}: create them with `ingest keys`"
            )
        authenticator = zmq.auth.thread.ThreadAuthenticator(self._context)
        authenticator.start()
        authenticator.configure_curve(domain=ZAP_DOMAIN, location=str(authorized))
        self._authenticator = authenticator

    def _pair(self, name: str, *, secret_needed: bool = True) -> tuple[bytes, bytes | None]:
        path = self._key_dir / (f"{name}.key_secret" if secret_needed else f"{name}.key")
        if not path.exists() and not secret_needed:
            path = self._key_dir / f"{name}.key_secret"
        if not path.exists():
            raise SecurityError(
                f"no key {path.name} in {self._key_dir}: a tcp:// endpoint needs CURVE keys "
                "(create them with `ingest keys`, or use ipc:// endpoints on one host)"
            )
        public, secret = zmq.auth.load_certificate(str(path))
        if secret_needed and not secret:
            raise SecurityError(f"{path} holds no secret key")
        return public, secret
