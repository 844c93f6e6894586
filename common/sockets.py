"""Socket conventions every stage follows (`MeshSockets`).

- Stable endpoints are bound by long-lived processes (ledger, saver inlet, control); the
  elastic pools (frontend workers, extractors, savers) only connect, so `circusctl
  incr/decr` never touches a port.
- Every socket gets a finite LINGER: with the default (wait forever) a close() + term() hangs
  whenever a peer is gone (docs/measurements.md).
- Producers set IMMEDIATE so messages are only queued on completed connections, never on a
  peer that is not there yet.
- Every socket bounds the frames it accepts (MAXMSGSIZE) and heartbeats its peers.
- ipc endpoints live in the private run folder; tcp endpoints are CURVE (common/security.py).
- Contexts are created after fork, inside each process's own main.
"""

from __future__ import annotations

import logging
import random
import socket as net
from collections.abc import Iterator
from pathlib import Path

import zmq

from common import metrics
from common.config import Settings
from common.messages import Message, decode_or_drop
from common.security import MeshSecurity, ensure_private_dir, is_tcp

log = logging.getLogger("sockets")

LINGER_MS = 1000
# A dead peer is noticed within about 3 s (docs/measurements.md: 22 s and counting without).
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000

# Below Linux's ephemeral range (32768-60999), where the local ports of outgoing connections
# come from: a port picked there with bind(0) can be taken by any client connection before
# the process it was picked for binds it (seen: a saver inlet failing with EADDRINUSE).
FREE_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def nobody_listens(endpoint: str) -> bool:
    """True when `endpoint` is an ipc socket nothing listens on (no file, or a stale one):
    a client can say "not running" at once instead of waiting out its timeout."""
    if not endpoint.startswith("ipc://"):
        return False
    probe = net.socket(net.AF_UNIX, net.SOCK_STREAM)
    try:
        probe.connect(endpoint[len("ipc://") :])
    except (FileNotFoundError, ConnectionRefusedError):
        return True
    except OSError:
        return False  # e.g. not allowed to look: let the real client find out
    finally:
        probe.close()
    return False


def free_tcp_port() -> int:
    """A loopback TCP port nothing listens on now, for tests and benchmarks that start a
    whole mesh; never the same twice in one process."""
    candidates = list(range(*FREE_PORT_RANGE))
    random.shuffle(candidates)
    for port in candidates:
        if port in _handed_out:
            continue
        with net.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port in {FREE_PORT_RANGE}")


def bind_endpoint(endpoint: str, bind_address: str) -> str:
    """The address a process binds for the tcp `endpoint` it owns: `bind_address` with the
    endpoint's port when set (a Kubernetes pod binds its own IP while the endpoint names
    its Service, which ZeroMQ can connect to but not bind), else the endpoint itself."""
    if not bind_address or not is_tcp(endpoint):
        return endpoint
    port = endpoint.rpartition(":")[2]
    host = f"[{bind_address}]" if ":" in bind_address else bind_address
    return f"tcp://{host}:{port}"


class MeshSockets:
    """One process's ZeroMQ context, and every socket of it opened the mesh's way.

    Each socket gets: a finite LINGER; its high-water marks; IMMEDIATE on producers;
    MAXMSGSIZE (a peer that sends a bigger frame is disconnected, so no frame can take a
    process's memory); ZeroMQ heartbeats (a dead peer is noticed in seconds, not never);
    and the mesh's security (common/security.py): a bound ipc endpoint lives in a private
    folder, a tcp endpoint is CURVE, as a server when bound, a client when connected.
    """

    def __init__(self, settings: Settings, context: zmq.Context | None = None) -> None:
        self._owns_context = context is None
        self.context = context or zmq.Context()
        self._settings = settings
        self._security = MeshSecurity(self.context, settings.key_path, settings.key_name)
        self._sockets: list[zmq.Socket] = []

    def bind(
        self, kind: int, endpoint: str, *, hwm: int | None = None, max_bytes: int | None = None
    ) -> zmq.Socket:
        socket = self._socket(kind, hwm, max_bytes)
        if is_tcp(endpoint):
            self._security.server(socket)
            endpoint = bind_endpoint(endpoint, self._settings.bind_address)
        elif endpoint.startswith("ipc://"):
            ensure_private_dir(Path(endpoint[len("ipc://") :]).parent)
        socket.bind(endpoint)
        return socket

    def connect(
        self, kind: int, endpoint: str, *, hwm: int | None = None, max_bytes: int | None = None
    ) -> zmq.Socket:
        socket = self._socket(kind, hwm, max_bytes)
        if is_tcp(endpoint):
            self._security.client(socket)
        socket.connect(endpoint)
        return socket

    def connect_all(
        self,
        kind: int,
        endpoints: list[str],
        *,
        hwm: int | None = None,
        max_bytes: int | None = None,
    ) -> zmq.Socket:
        """One socket connected to every endpoint (e.g. an extractor's PULL to every
        ledger); CURVE client if any is tcp://, which on a fleet they all are."""
        socket = self._socket(kind, hwm, max_bytes)
        if any(is_tcp(endpoint) for endpoint in endpoints):
            self._security.client(socket)
        for endpoint in endpoints:
            socket.connect(endpoint)
        return socket

    def close(self) -> None:
        """Close every socket opened here, then the context if it is this object's own
        (never hangs: finite linger)."""
        for socket in self._sockets:
            socket.close()
        self._security.close()
        if self._owns_context:
            self.context.term()

    def _socket(self, kind: int, hwm: int | None, max_bytes: int | None) -> zmq.Socket:
        socket = self.context.socket(kind)
        self._sockets.append(socket)
        socket.setsockopt(zmq.LINGER, LINGER_MS)
        socket.setsockopt(zmq.MAXMSGSIZE, max_bytes or self._settings.max_message_bytes)
        socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
        if hwm is not None:
            socket.setsockopt(zmq.SNDHWM, hwm)
            socket.setsockopt(zmq.RCVHWM, hwm)
        if kind == zmq.PUSH:
            socket.setsockopt(zmq.IMMEDIATE, 1)
        return socket


class LedgerReplies:
    """PUSH sockets to the ledgers, by ledger id, at the endpoints configuration gives
    (`Settings.ledger_ack_endpoints`), opened on first use. A message names a ledger by id
    only, never by address: an unknown id is dropped and logged, and no payload can make
    this process connect anywhere.

    Replies are best effort: if a ledger is away for a second, the reply is dropped and the
    ledger's lease brings the article back, which the store's markers make harmless.
    """

    def __init__(
        self, sockets: MeshSockets, endpoints: dict[str, str], send_timeout_ms: int = 1000
    ) -> None:
        self._mesh = sockets
        self._endpoints = endpoints
        self._timeout = send_timeout_ms
        self._sockets: dict[str, zmq.Socket] = {}

    def send(self, ledger: str, frame: bytes) -> bool:
        socket = self._sockets.get(ledger)
        if socket is None:
            endpoint = self._endpoints.get(ledger)
            if endpoint is None:
                log.warning("reply to an unknown ledger dropped", extra={"ledger": ledger})
                return False
            socket = self._mesh.connect(zmq.PUSH, endpoint)
            socket.setsockopt(zmq.SNDTIMEO, self._timeout)
            self._sockets[ledger] = socket
        try:
            socket.send(frame)
        except zmq.Again:
            return False
        return True


def receive_pairs(
    socket: zmq.Socket, limit: int, log: logging.Logger, source: str
) -> Iterator[tuple[bytes, Message]]:
    """Up to `limit` messages waiting now that are [key, message] (a ROUTER's routing id,
    the saver inlet's route key), as (key, decoded message). A message of any other shape,
    or whose second frame does not decode, is dropped and logged, never raised."""
    for _ in range(limit):
        try:
            frames = socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        if len(frames) != 2:
            metrics.FRAMES_DROPPED.inc()
            log.warning("dropped a message of %d frames", len(frames), extra={"source": source})
            continue
        message = decode_or_drop(frames[1], log, source)
        if message is not None:
            yield frames[0], message
