"""Socket conventions every stage follows.

- Stable endpoints are bound by long-lived processes (ledger, saver inlet); the elastic pools
  (extractors, savers) only connect, so `circusctl incr/decr` never touches a port.
- Every socket gets a finite LINGER: with the default (wait forever) a close() + term() hangs
  whenever a peer is gone (docs/measurements.md).
- Producers set IMMEDIATE so messages are only queued on completed connections, never on a
  peer that is not there yet.
- Contexts are created after fork, inside each process's own main.
"""

from __future__ import annotations

import random
import socket as net

import zmq

LINGER_MS = 1000

# Below Linux's ephemeral range (32768-60999), where the local ports of outgoing connections
# come from: a port picked there with bind(0) can be taken by any client connection before
# the process it was picked for binds it (seen: a saver inlet failing with EADDRINUSE).
FREE_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


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


def open_socket(
    context: zmq.Context,
    kind: int,
    endpoint: str,
    *,
    bind: bool,
    hwm: int | None = None,
) -> zmq.Socket:
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, LINGER_MS)
    if hwm is not None:
        socket.setsockopt(zmq.SNDHWM, hwm)
        socket.setsockopt(zmq.RCVHWM, hwm)
    if kind == zmq.PUSH:
        socket.setsockopt(zmq.IMMEDIATE, 1)
    if bind:
        socket.bind(endpoint)
    else:
        socket.connect(endpoint)
    return socket


class LedgerReplies:
    """PUSH sockets to the ledgers named in messages (their `ack_to`), opened on first use.

    Replies are best effort: if a ledger is away for a second, the reply is dropped and the
    ledger's lease brings the article back, which the store's markers make harmless.
    """

    def __init__(self, context: zmq.Context, send_timeout_ms: int = 1000) -> None:
        self._context = context
        self._timeout = send_timeout_ms
        self._sockets: dict[str, zmq.Socket] = {}

    def send(self, endpoint: str, frame: bytes) -> bool:
        socket = self._sockets.get(endpoint)
        if socket is None:
            socket = open_socket(self._context, zmq.PUSH, endpoint, bind=False)
            socket.setsockopt(zmq.SNDTIMEO, self._timeout)
            self._sockets[endpoint] = socket
        try:
            socket.send(frame)
        except zmq.Again:
            return False
        return True

    def close(self) -> None:
        for socket in self._sockets.values():
            socket.close()
