"""Socket conventions every stage follows.

- Stable endpoints are bound by long-lived processes (ledger, saver inlet); the elastic pools
  (extractors, savers) only connect, so `circusctl incr/decr` never touches a port.
- Every socket gets a finite LINGER: with the default (wait forever) a close() + term() hangs
  whenever a peer is gone (field notes).
- Producers set IMMEDIATE so messages are only queued on completed connections, never on a
  peer that is not there yet.
- Contexts are created after fork, inside each process's own main.
"""

from __future__ import annotations

import zmq

LINGER_MS = 1000


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
