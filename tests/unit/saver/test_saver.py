"""The saver process loop over real ZeroMQ sockets and a real SQLite store."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import zmq

from common.config import load_settings
from common.lifecycle import StopFlag
from common.messages import Ack, Entity, Extraction, decode, encode, entity_key
from services.saver.__main__ import _commit, run
from store.sqlite import SqliteStore


def test_saver_commits_then_acknowledges_each_ledger(tmp_path: Path):
    run_dir = tmp_path / "run"
    results_out = f"ipc://{run_dir}/results-out"
    ledgers = {name: f"ipc://{run_dir}/acks-{name}" for name in ("front1", "front2")}
    settings = load_settings(
        {},
        data_dir=str(tmp_path),
        results_out_endpoint=results_out,
        flush_seconds=0.05,
        ledger_acks=[f"{name}={endpoint}" for name, endpoint in ledgers.items()],
    )
    context = zmq.Context()
    run_dir.mkdir(mode=0o700)
    inlet = context.socket(zmq.PUSH)
    inlet.bind(results_out)
    acks = []
    for endpoint in ledgers.values():
        socket = context.socket(zmq.PULL)
        socket.bind(endpoint)
        acks.append(socket)
    stop = StopFlag()
    saver = threading.Thread(target=run, args=(settings, stop))
    saver.start()
    try:
        paris = Entity(entity_key("Paris", "GPE"), "Paris", "GPE", 1)
        names = list(ledgers)
        for i in range(6):
            inlet.send(encode(Extraction(f"a{i}", "Pub", [paris], names[i % 2], 100 + i)))
        inlet.send(encode(Extraction("a0", "Pub", [paris], "front1", 999)))  # re-delivery
        inlet.send(b"not a message")  # dropped, and the saver carries on
        inlet.send(encode(Extraction("a9", "Pub", [paris], "nowhere", 9)))  # unknown ledger
        got: list[set[tuple[str, int]]] = [set(), set()]
        want = [
            {("a0", 100), ("a2", 102), ("a4", 104), ("a0", 999)},
            {("a1", 101), ("a3", 103), ("a5", 105)},
        ]
        deadline = time.monotonic() + 20
        while got != want and time.monotonic() < deadline:
            for n, socket in enumerate(acks):
                if socket.poll(100):
                    message = decode(socket.recv())
                    assert isinstance(message, Ack)
                    got[n].update((a.id, a.token) for a in message.articles)
        assert got == want
        assert saver.is_alive()
    finally:
        stop.set()
        saver.join(timeout=10)
        for socket in [inlet, *acks]:
            socket.close(linger=0)
        context.term()
    store = SqliteStore(settings.sqlite_store_path)
    assert store.top_entities("Pub").entities[0].count == 7  # a9 is counted, not acked
    assert store.publications()[0].articles == 7


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
    batch = [Extraction("a1", "Pub", [Entity("k", "Paris", "GPE", 2)], "local", 1)]
    assert _commit(store, batch, StopFlag()).counted == ["a1"]
    assert store.attempts == 4
    assert store.top_entities("Pub").entities[0].count == 2


def test_commit_gives_up_when_stopped(tmp_path: Path):
    store = FlakyStore(tmp_path / "store.sqlite3", failures=10**6)
    stop = StopFlag()
    stop.set()
    batch = [Extraction("a1", "Pub", [], "local", 1)]
    assert _commit(store, batch, stop) is None
    assert store.attempts == 1
    assert store.publications() == []


class PoisonStore(SqliteStore):
    """A real SQLite store that refuses one article's values for good, as a store refuses an
    out-of-range value or an oversized document (injected: once the wire validates counts and
    sizes, no real article reaches such an error on SQLite; say so, as it is a stand-in)."""

    def __init__(self, path: Path, poison_id: str) -> None:
        super().__init__(path)
        self.poison_id = poison_id

    def commit(self, batch):
        if any(extraction.id == self.poison_id for extraction in batch):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return super().commit(batch)


def test_poison_is_set_aside_and_the_rest_of_the_batch_commits(tmp_path: Path):
    store = PoisonStore(tmp_path / "store.sqlite3", poison_id="bad")
    paris = [Entity(entity_key("Paris", "GPE"), "Paris", "GPE", 1)]
    batch = [Extraction(ident, "Pub", paris, "local", 1) for ident in ("a1", "bad", "a2")]
    outcome = _commit(store, batch, StopFlag())
    assert [e.id for e in outcome.committed] == ["a1", "a2"]
    assert sorted(outcome.counted) == ["a1", "a2"]
    ((refused, error),) = outcome.poison
    assert refused.id == "bad" and error.startswith("OverflowError")
    assert store.counted(["a1", "bad", "a2"]) == {"a1", "a2"}
