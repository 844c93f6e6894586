"""The ledger's dispatch over real ZeroMQ sockets (a ROUTER, extractors' DEALERs): nothing
is read or sent before an extractor asks, an ask gets one chunk in journal order, chunks
shrink as the journal runs dry, and what could not be sent stays to be sent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from common.messages import Article, Want, decode, encode
from common.sockets import MeshSockets
from services.frontend.journal import Entry, Journal, Row
from services.frontend.ledger.__main__ import _answer, _hear_asks
from services.frontend.ledger.dispatcher import Ledger
from services.frontend.ledger.wants import Wants

ROOM = 64


@pytest.fixture
def journal(tmp_path: Path):
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.set_gate("accepting", 1)
    journal.append([Entry(f"id{i}", "Pub", f"text {i} " + "news " * 40) for i in range(200)])
    yield journal
    journal.close()


@pytest.fixture
def ledger(journal: Journal) -> Ledger:
    return Ledger(journal, window=512, lease_seconds=60.0, max_attempts=3)


@pytest.fixture
def dispatch(mesh_sockets: MeshSockets, tmp_path: Path) -> tuple[zmq.Socket, str]:
    endpoint = f"ipc://{tmp_path}/run/dispatch"
    socket = mesh_sockets.bind(zmq.ROUTER, endpoint)
    socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
    return socket, endpoint


def extractor(mesh_sockets: MeshSockets, endpoint: str) -> zmq.Socket:
    return mesh_sockets.connect(zmq.DEALER, endpoint)


def ask(router: zmq.Socket, dealer: zmq.Socket, wants: Wants, seq: int, room: int = ROOM):
    dealer.send(encode(Want(seq, room)))
    assert router.poll(2000)
    _hear_asks(router, wants)


def chunk(dealer: zmq.Socket, seconds: float = 2.0) -> list[Article]:
    if not dealer.poll(int(seconds * 1000)):
        return []
    articles = [decode(frame) for frame in dealer.recv_multipart()]
    assert all(isinstance(a, Article) for a in articles)
    return articles  # type: ignore[return-value]


def test_nothing_is_read_or_sent_before_an_extractor_asks(ledger: Ledger, dispatch, mesh_sockets):
    router, endpoint = dispatch
    dealer = extractor(mesh_sockets, endpoint)
    reads: list[int | None] = []
    real_fresh = ledger.fresh
    ledger.fresh = lambda limit=None: reads.append(limit) or real_fresh(limit)  # type: ignore[method-assign]
    wants = Wants()
    assert _answer(router, ledger, wants, [], "local") == []
    assert reads == [] and ledger.in_flight == {}
    assert chunk(dealer, 0.2) == []


def test_an_ask_gets_one_chunk_in_journal_order_and_the_rest_waits(
    ledger: Ledger, journal: Journal, dispatch, mesh_sockets
):
    router, endpoint = dispatch
    dealer = extractor(mesh_sockets, endpoint)
    wants = Wants()
    ask(router, dealer, wants, seq=1)
    _answer(router, ledger, wants, [], "local")
    got = chunk(dealer)
    assert [a.id for a in got] == [f"id{i}" for i in range(ROOM)]  # 200 left: a full chunk
    assert not wants  # answered: nothing more until it asks again
    _answer(router, ledger, wants, [], "local")
    assert chunk(dealer, 0.2) == []
    assert len(ledger.in_flight) == ROOM
    assert journal.backlog().articles == 200  # journaled until acknowledged


def test_a_repeated_ask_is_answered_once(ledger: Ledger, dispatch, mesh_sockets):
    router, endpoint = dispatch
    dealer = extractor(mesh_sockets, endpoint)
    wants = Wants()
    ask(router, dealer, wants, seq=1)
    _answer(router, ledger, wants, [], "local")
    assert len(chunk(dealer)) == ROOM
    ask(router, dealer, wants, seq=1)  # the same ask again (sent while the chunk travelled)
    _answer(router, ledger, wants, [], "local")
    assert chunk(dealer, 0.2) == []


def test_chunks_shrink_as_the_journal_runs_dry_and_add_up(ledger: Ledger, dispatch, mesh_sockets):
    """Two extractors taking turns: a full chunk while plenty is left, then about a quarter
    of what is left each, down to single articles; every article once, in order."""
    router, endpoint = dispatch
    dealers = [extractor(mesh_sockets, endpoint), extractor(mesh_sockets, endpoint)]
    wants = Wants()
    sizes: list[int] = []
    ids: list[str] = []
    for turn in range(1, 100):
        dealer = dealers[turn % 2]
        ask(router, dealer, wants, seq=turn)
        _answer(router, ledger, wants, [], "local")
        got = chunk(dealer, 0.5)
        if not got:
            break
        sizes.append(len(got))
        ids += [a.id for a in got]
    assert ids == [f"id{i}" for i in range(200)]
    assert sizes[0] == ROOM  # 200 left, one extractor heard so far: ceil(200 / 2), capped
    assert sizes[1] == 34  # 136 left, two extractors heard: ceil(136 / 4)
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-3:] == [1, 1, 1]


def test_an_extractor_gone_before_its_answer_leaves_the_rows_for_the_next(
    ledger: Ledger, dispatch, mesh_sockets
):
    router, endpoint = dispatch
    leaving = extractor(mesh_sockets, endpoint)
    wants = Wants()
    ask(router, leaving, wants, seq=1)
    leaving.close(linger=0)
    time.sleep(0.2)  # the ROUTER notices the disconnection
    staying = extractor(mesh_sockets, endpoint)
    _answer(router, ledger, wants, [], "local")
    assert ledger.in_flight == {}  # nothing recorded as sent
    assert not wants  # the gone extractor's ask is forgotten
    ask(router, staying, wants, seq=1)
    _answer(router, ledger, wants, [], "local")
    assert [a.id for a in chunk(staying)][:2] == ["id0", "id1"]


def test_late_rows_go_first_and_wait_for_an_ask(
    ledger: Ledger, journal: Journal, dispatch, mesh_sockets
):
    router, endpoint = dispatch
    dealer = extractor(mesh_sockets, endpoint)
    wants = Wants()
    ask(router, dealer, wants, seq=1, room=3)
    _answer(router, ledger, wants, [], "local")
    first = chunk(dealer)
    late: list[Row] = journal.rows([a.id for a in first])
    # No ask open: the late rows wait.
    assert _answer(router, ledger, wants, late, "local") == late
    ask(router, dealer, wants, seq=2, room=2)
    left = _answer(router, ledger, wants, late, "local")
    assert [a.id for a in chunk(dealer)] == [r.id for r in late[:2]]
    assert left == late[2:]
    assert ledger.counts["redelivered"] == 2
