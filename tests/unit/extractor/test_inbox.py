"""An extractor's inbox (services/extractor/inbox.py) against real ROUTER sockets standing
in for two ledgers: it asks each once, repeats an unanswered ask with the same seq, asks
again only after an answer, and drops what is not a chunk of Articles."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from common.messages import Article, Want, decode, encode
from common.sockets import MeshSockets
from services.extractor.inbox import WANT_REPEAT_SECONDS, Inbox


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def ledgers(mesh_sockets: MeshSockets, tmp_path: Path) -> dict[str, tuple[zmq.Socket, str]]:
    found = {}
    for name in ("one", "two"):
        endpoint = f"ipc://{tmp_path}/run/{name}"
        found[name] = (mesh_sockets.bind(zmq.ROUTER, endpoint), endpoint)
    return found


def asks(router: zmq.Socket, wait_ms: int = 2000) -> list[tuple[bytes, Want]]:
    heard = []
    while router.poll(wait_ms if not heard else 100):
        peer, frame = router.recv_multipart()
        message = decode(frame)
        assert isinstance(message, Want)
        heard.append((peer, message))
    return heard


def article(ident: str) -> bytes:
    return encode(Article(ident, "Pub", "text", "one", 7))


def connected_inbox(mesh_sockets, ledgers, clock: Clock) -> Inbox:
    inbox = Inbox(
        mesh_sockets, {name: endpoint for name, (_, endpoint) in ledgers.items()}, 8, clock
    )
    for _ in range(50):  # IMMEDIATE: an ask goes only once the ledger is connected
        inbox.receive(20)
        if len(inbox._open) == 2:
            break
    return inbox


def test_it_asks_each_ledger_once_and_repeats_an_unanswered_ask(mesh_sockets, ledgers):
    clock = Clock()
    inbox = connected_inbox(mesh_sockets, ledgers, clock)
    one, two = ledgers["one"][0], ledgers["two"][0]
    [(_, first)] = asks(one)
    [(_, other)] = asks(two)
    assert first.room == other.room == 8
    assert first.seq != other.seq
    assert inbox.receive(50) == []
    assert asks(one, 200) == []  # asked already: no second ask within the second
    clock.t += WANT_REPEAT_SECONDS
    inbox.receive(50)
    [(_, repeat)] = asks(one)
    assert repeat == first  # the same ask, answered at most once


def test_it_takes_a_chunk_and_asks_again_only_then(mesh_sockets, ledgers):
    clock = Clock()
    inbox = connected_inbox(mesh_sockets, ledgers, clock)
    one = ledgers["one"][0]
    [(peer, first)] = asks(one)
    asks(ledgers["two"][0])
    one.send_multipart([peer, article("a"), article("b")])
    got = inbox.receive(2000)
    assert [a.id for a in got] == ["a", "b"]
    # Less than asked: the ledger is running dry, so no ask until this batch is done.
    assert asks(one, 200) == []
    inbox.receive(50)
    [(_, following)] = asks(one)
    assert following.seq > first.seq
    assert asks(ledgers["two"][0], 200) == []  # two owes its chunk still


def test_a_full_chunk_is_followed_by_the_next_ask_before_extraction(mesh_sockets, ledgers):
    """A ledger that filled the ask has plenty left: the next chunk travels while this one
    is extracted."""
    inbox = connected_inbox(mesh_sockets, ledgers, Clock())
    one = ledgers["one"][0]
    [(peer, first)] = asks(one)
    one.send_multipart([peer] + [article(f"a{i}") for i in range(8)])
    assert len(inbox.receive(2000)) == 8
    [(_, following)] = asks(one)  # sent by that same receive
    assert following.seq > first.seq


def test_bad_frames_and_chunks_larger_than_asked_are_dropped(mesh_sockets, ledgers):
    inbox = connected_inbox(mesh_sockets, ledgers, Clock())
    one = ledgers["one"][0]
    [(peer, _)] = asks(one)
    one.send_multipart([peer, b"\x93not an article", article("kept")])
    assert [a.id for a in inbox.receive(2000)] == ["kept"]
    inbox.receive(50)
    [(peer, _)] = asks(one)
    one.send_multipart([peer] + [article(f"x{i}") for i in range(9)])  # asked for 8
    assert inbox.receive(2000) == []


def test_chunks_waiting_when_it_stops_are_taken_without_asking_again(mesh_sockets, ledgers):
    """What a stopping extractor gives back: the chunk it asked for ahead."""
    inbox = connected_inbox(mesh_sockets, ledgers, Clock())
    one = ledgers["one"][0]
    [(peer, _)] = asks(one)
    one.send_multipart([peer, article("ahead")])
    deadline = 50
    while not (waiting := inbox.waiting()) and deadline:
        time.sleep(0.05)
        deadline -= 1
    assert [a.id for a in waiting] == ["ahead"]
    assert asks(one, 200) == []
