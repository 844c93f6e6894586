"""The journal-appends signal over real ZeroMQ sockets: it never blocks a request, it
coalesces, and it wakes the ledger's poller."""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from common.sockets import MeshSockets
from services.frontend.appends import AppendSignal, listen, take_all


def test_no_ledger_no_block(mesh_sockets: MeshSockets, tmp_path: Path):
    signal = AppendSignal(mesh_sockets, f"ipc://{tmp_path}/run/journal-appends")
    started = time.monotonic()
    for _ in range(1000):
        signal.rows_appended()  # nobody bound: dropped at once (IMMEDIATE, NOBLOCK)
    assert time.monotonic() - started < 1.0


def test_signals_wake_the_ledger_and_coalesce(mesh_sockets: MeshSockets, tmp_path: Path):
    endpoint = f"ipc://{tmp_path}/run/journal-appends"
    ledger = listen(mesh_sockets, endpoint)
    signal = AppendSignal(mesh_sockets, endpoint)
    poller = zmq.Poller()
    poller.register(ledger, zmq.POLLIN)
    deadline = time.monotonic() + 5
    while not poller.poll(10) and time.monotonic() < deadline:
        signal.rows_appended()  # until the connection is up
    for _ in range(500):
        signal.rows_appended()
    wakes = taken = 0
    while poller.poll(200):  # the ledger's loop: wake, take what is there, sleep
        wakes += 1
        taken += take_all(ledger)
    # A queue of one on each end (and the kernel's buffer): a few wake-ups, not 500.
    assert 1 <= wakes <= taken < 100
    signal.rows_appended()
    assert poller.poll(2000)
