"""The saver inlet over real ZeroMQ sockets: routing by publication, savers coming and going,
bad messages dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from common.config import load_settings
from common.lifecycle import StopFlag
from common.messages import SAVER_READY, route_key
from common.sockets import MeshSockets
from services.saver_inlet.__main__ import run

PUBLICATIONS = [f"Publication {i}" for i in range(12)]


class FakeSaver:
    """A DEALER that announces itself as a saver does and records what it gets."""

    def __init__(self, context: zmq.Context, endpoint: str, name: bytes | None = None) -> None:
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if name is not None:
            # A fixed identity, so the rendezvous hashing gives the same owners every run
            # (the inlet's own savers get ids from the ROUTER).
            self.socket.setsockopt(zmq.ROUTING_ID, name)
        self.socket.connect(endpoint)
        self.got: list[tuple[bytes, bytes]] = []

    def ready(self) -> None:
        self.socket.send(SAVER_READY)

    def take(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.socket.poll(50):
                key, body = self.socket.recv_multipart()
                self.got.append((key, body))


@pytest.fixture
def inlet(tmp_path: Path) -> Iterator[tuple[zmq.Context, zmq.Socket, str]]:
    settings = load_settings({}, data_dir=str(tmp_path))
    stop = StopFlag()
    thread = threading.Thread(target=run, args=(settings, stop))
    thread.start()
    context = zmq.Context()
    extractor = MeshSockets(settings, context).connect(zmq.PUSH, settings.results_in_endpoint)
    try:
        yield context, extractor, settings.results_out_endpoint
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        # Every socket of the test's context, the savers' included, even after a failure.
        context.destroy(linger=0)


def send_round(extractor: zmq.Socket, n: int) -> None:
    for publication in PUBLICATIONS:
        extractor.send_multipart([route_key(publication), f"{publication}|{n}".encode()])


def by_saver(savers: list[FakeSaver]) -> list[set[str]]:
    return [{body.decode().split("|")[0] for _, body in s.got} for s in savers]


def test_each_publication_goes_to_one_saver_and_moves_when_it_leaves(inlet):
    context, extractor, endpoint = inlet
    savers = [FakeSaver(context, endpoint, f"saver-{n}".encode()) for n in range(3)]
    for saver in savers:
        saver.ready()
    time.sleep(0.5)
    for n in range(5):
        send_round(extractor, n)
    for saver in savers:
        saver.take(1.0)
    owned = by_saver(savers)
    # Every publication at exactly one saver, all five of its results there.
    assert sorted(p for ps in owned for p in ps) == sorted(PUBLICATIONS)
    assert sum(len(s.got) for s in savers) == 5 * len(PUBLICATIONS)
    assert all(owned), "rendezvous hashing left a saver without publications"

    # One saver goes away: its publications move to the others, the others stay put.
    gone = savers.pop(1)
    gone.socket.close()
    for saver in savers:
        saver.got.clear()
        saver.ready()
    time.sleep(0.5)
    send_round(extractor, 9)
    for saver in savers:
        saver.take(1.0)
    now_owned = by_saver(savers)
    assert sorted(p for ps in now_owned for p in ps) == sorted(PUBLICATIONS)
    for before, after in zip([owned[0], owned[2]], now_owned, strict=True):
        assert before <= after


def test_results_wait_for_a_saver_and_bad_messages_are_dropped(inlet):
    context, extractor, endpoint = inlet
    extractor.send_multipart([b"short", b"wrong key size"])
    extractor.send(b"one frame")
    send_round(extractor, 0)  # no saver yet: held, not lost
    time.sleep(0.3)
    saver = FakeSaver(context, endpoint)
    saver.ready()
    saver.take(1.5)
    assert sorted(body.decode() for _, body in saver.got) == sorted(f"{p}|0" for p in PUBLICATIONS)


def test_a_silent_saver_is_forgotten(inlet):
    context, extractor, endpoint = inlet
    quiet, talking = FakeSaver(context, endpoint), FakeSaver(context, endpoint)
    quiet.ready()
    talking.ready()
    deadline = time.monotonic() + 4.0  # past the 3 s ttl, only one keeps talking
    while time.monotonic() < deadline:
        talking.ready()
        talking.take(0.5)
    send_round(extractor, 0)
    talking.take(1.0)
    quiet.take(0.2)
    assert quiet.got == []
    assert len(talking.got) == len(PUBLICATIONS)
