"""The saver process loop over real ZeroMQ sockets and a real SQLite store."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import zmq

from common.config import load_settings
from common.lifecycle import StopFlag
from common.messages import Ack, Entity, Extraction, decode, encode
from services.saver.__main__ import _commit, run
from store.sqlite import SqliteStore
from tests.conftest import free_port


def test_saver_commits_then_acknowledges_each_ledger(tmp_path: Path):
    results_out = f"tcp://127.0.0.1:{free_port()}"
    ledgers = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
    settings = load_settings(
        {}, data_dir=str(tmp_path), results_out_endpoint=results_out, flush_seconds=0.05
    )
    context = zmq.Context()
    inlet = context.socket(zmq.PUSH)
    inlet.bind(results_out)
    acks = []
    for endpoint in ledgers:
        socket = context.socket(zmq.PULL)
        socket.bind(endpoint)
        acks.append(socket)
    stop = StopFlag()
    saver = threading.Thread(target=run, args=(settings, stop))
    saver.start()
    try:
        paris = Entity("k-paris", "Paris", "GPE", 1)
        for i in range(6):
            inlet.send(encode(Extraction(f"a{i}", "Pub", [paris], ledgers[i % 2])))
        inlet.send(encode(Extraction("a0", "Pub", [paris], ledgers[0])))  # re-delivery
        got: list[set[str]] = [set(), set()]
        deadline = time.monotonic() + 20
        while (got[0] != {"a0", "a2", "a4"} or got[1] != {"a1", "a3", "a5"}) and (
            time.monotonic() < deadline
        ):
            for n, socket in enumerate(acks):
                if socket.poll(100):
                    message = decode(socket.recv())
                    assert isinstance(message, Ack)
                    got[n].update(message.ids)
        assert got == [{"a0", "a2", "a4"}, {"a1", "a3", "a5"}]
    finally:
        stop.set()
        saver.join(timeout=10)
        for socket in [inlet, *acks]:
            socket.close(linger=0)
        context.term()
    store = SqliteStore(settings.sqlite_store_path)
    assert store.top_entities("Pub").entities[0].count == 6
    assert store.publications()[0].articles == 6


class FlakyStore(SqliteStore):
    """A real SQLite store whose first `failures` commits raise, as a store outage does
    (injected: an outage of a given length cannot be produced on demand in a unit test;
    tests/e2e/test_faults.py locks the real store file instead)."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures
        self.attempts = 0

    def commit(self, batch):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise sqlite3.OperationalError("database is locked")
        return super().commit(batch)


def test_commit_retries_until_the_store_answers(tmp_path: Path):
    store = FlakyStore(tmp_path / "store.sqlite3", failures=3)
    batch = [Extraction("a1", "Pub", [Entity("k", "Paris", "GPE", 2)], "tcp://ledger")]
    assert _commit(store, batch, StopFlag()) == ["a1"]
    assert store.attempts == 4
    assert store.top_entities("Pub").entities[0].count == 2


def test_commit_gives_up_when_stopped(tmp_path: Path):
    store = FlakyStore(tmp_path / "store.sqlite3", failures=10**6)
    stop = StopFlag()
    stop.set()
    batch = [Extraction("a1", "Pub", [], "tcp://ledger")]
    assert _commit(store, batch, stop) is None
    assert store.attempts == 1
    assert store.publications() == []
