"""The saver process loop over real ZeroMQ sockets and a real SQLite store."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from pathlib import Path

import zmq

from common.config import load_settings
from common.lifecycle import StopFlag
from common.messages import (
    SAVER_READY,
    Ack,
    Entity,
    Extraction,
    decode,
    encode,
    entity_key,
    route_key,
)
from common.sockets import MeshSockets
from services.saver.__main__ import Saver, run
from services.saver.schedule import CommitSchedule
from store.sqlite import SqliteStore

PARIS = Entity(entity_key("Paris", "GPE"), "Paris", "GPE", 1)


def wait_for_saver(inlet: zmq.Socket) -> bytes:
    """The routing id of the first saver that says it is ready."""
    assert inlet.poll(10_000), "the saver never said it was ready"
    saver, message = inlet.recv_multipart()
    assert message == SAVER_READY
    return saver


def send(inlet: zmq.Socket, saver: bytes, result: Extraction | bytes) -> None:
    body = result if isinstance(result, bytes) else encode(result)
    inlet.send_multipart([saver, route_key("Pub"), body])


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
    inlet = context.socket(zmq.ROUTER)
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
        saver_id = wait_for_saver(inlet)
        names = list(ledgers)
        for i in range(6):
            send(inlet, saver_id, Extraction(f"a{i}", "Pub", [PARIS], names[i % 2], 100 + i))
        send(inlet, saver_id, Extraction("a0", "Pub", [PARIS], "front1", 999))  # re-delivery
        send(inlet, saver_id, b"not a message")  # dropped, and the saver carries on
        inlet.send_multipart([saver_id, b"one frame only"])  # dropped too
        send(inlet, saver_id, Extraction("a9", "Pub", [PARIS], "nowhere", 9))  # unknown ledger
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
        # It keeps saying it is there, about once a second.
        heard = 0
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            if inlet.poll(100) and inlet.recv_multipart() == [saver_id, SAVER_READY]:
                heard += 1
        assert 2 <= heard <= 5
    finally:
        stop.set()
        saver.join(timeout=10)
        for socket in [inlet, *acks]:
            socket.close(linger=0)
        context.term()
    store = SqliteStore(settings.sqlite_store_path)
    assert store.top_entities("Pub").entities[0].count == 7  # a9 is counted, not acked
    assert store.publications()[0].articles == 7


class ContendedStore(SqliteStore):
    """A real SQLite store that refuses commits touching one publication for a while, as
    Firestore answers ABORTED on a contended document (injected: SQLite has no per-document
    contention; tests/e2e/test_firestore_savers.py injects ABORTED at the RPC layer of
    the real Firestore emulator)."""

    def __init__(self, path: Path, hot: str, until: float) -> None:
        super().__init__(path)
        self.hot, self.until = hot, until
        self.commits: list[tuple[float, str]] = []

    def commit(self, batch):
        publications = {e.publication for e in batch}
        if self.hot in publications and time.monotonic() < self.until:
            raise sqlite3.OperationalError("too much contention (injected)")
        self.commits.extend((time.monotonic(), p) for p in publications)
        return super().commit(batch)


def test_a_contended_publication_backs_off_while_the_others_commit(tmp_path: Path):
    settings = load_settings({}, data_dir=str(tmp_path))
    context = zmq.Context()
    (tmp_path / "run").mkdir(mode=0o700)
    inlet = context.socket(zmq.ROUTER)
    inlet.bind(settings.results_out_endpoint)
    sockets = MeshSockets(settings, context)
    stores: list[ContendedStore] = []
    stop = StopFlag()

    def run_saver() -> None:
        # SQLite connections belong to the thread that opened them.
        store = ContendedStore(tmp_path / "store.sqlite3", "Hot", time.monotonic() + 2.0)
        stores.append(store)
        saver = Saver(settings, store, sockets)
        # Firestore's schedule: per publication, at most one commit a second each.
        saver.schedule = CommitSchedule(
            per_publication=True, min_interval=1.0, gather_seconds=0.05, max_articles=100
        )
        saver.run(stop)

    thread = threading.Thread(target=run_saver)
    thread.start()
    try:
        saver_id = wait_for_saver(inlet)
        started = time.monotonic()
        for i in range(40):
            for publication in ("Hot", "Calm"):
                body = encode(Extraction(f"{publication}{i}", publication, [PARIS], "local", 1))
                inlet.send_multipart([saver_id, route_key(publication), body])
            time.sleep(0.1)
        deadline = time.monotonic() + 15
        reader = SqliteStore(tmp_path / "store.sqlite3")
        every = {f"{publication}{i}" for publication in ("Hot", "Calm") for i in range(40)}
        while reader.counted(list(every)) != every:
            assert time.monotonic() < deadline, "not everything committed"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
        sockets.close()
        inlet.close(linger=0)
        context.term()
    calm = [t - started for t, p in stores[0].commits if p == "Calm"]
    hot = [t - started for t, p in stores[0].commits if p == "Hot"]
    # Calm went on committing during Hot's contention (the first 2 s), about once a second.
    assert sum(t < 2.0 for t in calm) >= 2
    assert hot and min(hot) >= 2.0
    for times in (calm, hot):
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 1.0  # paced: never two commits of a publication within 1 s
    assert reader.top_entities("Hot").entities[0].count == 40
    assert reader.top_entities("Calm").entities[0].count == 40
