"""The ledger's dispatch over real ZeroMQ sockets: articles wait in the journal, not in the
queue of a busy extractor, and the journal is read only while an extractor has room."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from common.config import Settings
from common.messages import Article, decode
from common.sockets import MeshSockets
from services.frontend.journal import Entry, Journal
from services.frontend.ledger.__main__ import _send_fresh
from services.frontend.ledger.dispatcher import Ledger

QUEUE = 4  # the high-water mark on both ends, as the ledger and extractors set batch_size


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.set_gate("accepting", 1)
    journal.append([Entry(f"id{i}", "Pub", f"text {i} " + "news " * 400) for i in range(200)])
    return journal


def fresh_ledger(journal: Journal) -> Ledger:
    """A ledger whose window (512) is far from binding: only the queue can hold it back."""
    return Ledger(journal, window=512, lease_seconds=60.0, max_attempts=3)


@pytest.fixture
def sockets(tmp_path: Path):
    mesh = MeshSockets(Settings(data_dir=str(tmp_path)))
    yield mesh
    mesh.close()


def test_no_extractor_no_journal_read(journal: Journal, sockets: MeshSockets, tmp_path: Path):
    dispatch = sockets.bind(zmq.PUSH, f"ipc://{tmp_path}/run/dispatch", hwm=QUEUE)
    ledger = fresh_ledger(journal)
    reads: list[int | None] = []
    real_fresh = ledger.fresh

    def counted_fresh(limit: int | None = None):
        reads.append(limit)
        return real_fresh(limit)

    ledger.fresh = counted_fresh  # type: ignore[method-assign]
    assert _send_fresh(dispatch, ledger, "local") is True  # waiting for room
    assert reads == []  # no room anywhere (IMMEDIATE: no extractor connected)
    assert ledger.in_flight == {}


def test_a_busy_extractor_holds_a_short_queue_and_the_rest_waits_in_the_journal(
    journal: Journal, sockets: MeshSockets, tmp_path: Path
):
    endpoint = f"ipc://{tmp_path}/run/dispatch"
    dispatch = sockets.bind(zmq.PUSH, endpoint, hwm=QUEUE)
    busy = sockets.connect(zmq.PULL, endpoint, hwm=QUEUE)  # connected, never reading
    ledger = fresh_ledger(journal)
    poller = zmq.Poller()
    poller.register(dispatch, zmq.POLLOUT)
    for _ in range(50):  # the ledger's loop, with the connection up
        poller.poll(20)
        _send_fresh(dispatch, ledger, "local")
    held = len(ledger.in_flight)
    # The send queue, the inbox and the kernel's socket buffer: far below the window (the
    # old 512-deep queue took all 200 at once), and the rest still in the journal.
    assert 2 * QUEUE <= held < 100
    assert journal.backlog().articles == 200
    first = decode(busy.recv())
    assert isinstance(first, Article) and first.id == "id0"  # in journal order


def test_an_exhausted_journal_is_not_waiting_for_room(sockets: MeshSockets, tmp_path: Path):
    journal = Journal(tmp_path / "empty.sqlite3")
    endpoint = f"ipc://{tmp_path}/run/dispatch"
    dispatch = sockets.bind(zmq.PUSH, endpoint, hwm=QUEUE)
    sockets.connect(zmq.PULL, endpoint, hwm=QUEUE)
    ledger = fresh_ledger(journal)
    poller = zmq.Poller()
    poller.register(dispatch, zmq.POLLOUT)
    assert poller.poll(2000)  # the extractor is connected: room
    # Nothing to send: the ledger looks at the journal again after its poll, rather than
    # sleeping until room that is already there.
    assert _send_fresh(dispatch, ledger, "local") is False
    journal.close()
