"""Telling the ledger that rows were journaled, so it sleeps until there is work.

A frontend worker, after each journal commit, sends an empty frame on a PUSH socket to the
ledger's PULL (`journal_appends_endpoint`, always ipc: both use this host's journal file).
The signal carries nothing: the ledger reads the journal itself, so a forged signal costs
one cheap read and a lost one costs at most `ledger_poll_seconds` of latency (the ledger
also looks that often on its own). Until this, the ledger looked every 20 ms whether or
not anything had arrived: half of the idle mesh's CPU (bench/RESULTS.md, "A mesh that sleeps").

The send never blocks a request: NOBLOCK on a queue of one, and a signal that does not fit
(one is waiting already) or has no ledger to go to is simply not needed.
"""

from __future__ import annotations

import contextlib

import zmq

from common.sockets import MeshSockets

# An empty frame is a signal; a peer that sends a frame over this is disconnected by
# ZeroMQ (MAXMSGSIZE). Not smaller: the limit also applies to ZMTP's own handshake
# commands (READY and its properties), and 16 bytes refused every connection.
MAX_SIGNAL_BYTES = 1024


class AppendSignal:
    """A frontend worker's side: `rows_appended()` after each commit that added rows."""

    def __init__(self, sockets: MeshSockets, endpoint: str) -> None:
        self._socket = sockets.connect(zmq.PUSH, endpoint, hwm=1, max_bytes=MAX_SIGNAL_BYTES)

    def rows_appended(self) -> None:
        # Not sent when a signal is waiting already or no ledger is there: it reads the
        # journal anyway.
        with contextlib.suppress(zmq.Again):
            self._socket.send(b"", zmq.NOBLOCK)


def listen(sockets: MeshSockets, endpoint: str) -> zmq.Socket:
    """The ledger's side: a PULL the poller wakes on when a worker journaled rows."""
    return sockets.bind(zmq.PULL, endpoint, hwm=1, max_bytes=MAX_SIGNAL_BYTES)


def take_all(socket: zmq.Socket, limit: int = 1000) -> int:
    """Consume the signals waiting, at most `limit` (a peer that floods them cannot hold
    the ledger here); their content is ignored. Returns how many were taken."""
    for taken in range(limit):
        try:
            socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            return taken
    return limit
