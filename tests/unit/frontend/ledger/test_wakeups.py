"""The ledger's loop over real sockets sleeps until a frontend worker signals that it
journaled rows: it does not look at the journal every few milliseconds on its own."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import zmq

from common.config import load_settings
from common.lifecycle import StopFlag
from common.messages import Article, decode
from common.sockets import MeshSockets
from services.frontend.appends import AppendSignal
from services.frontend.journal import Entry, Journal
from services.frontend.ledger.__main__ import run

LONG = 60.0  # the ledger's own poll and lease scan: far beyond this test


def received(extractor: zmq.Socket, seconds: float) -> list[str]:
    """The ids of the articles dispatched to `extractor`, from the first one that arrives
    within `seconds` until none is waiting."""
    ids = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (ids and not extractor.poll(0)):
        if extractor.poll(50):
            article = decode(extractor.recv())
            assert isinstance(article, Article)
            ids.append(article.id)
    return ids


def test_the_ledger_dispatches_on_a_signal_not_on_a_timer(tmp_path: Path):
    settings = load_settings({}, data_dir=str(tmp_path), ledger_poll_seconds=LONG)
    stop = StopFlag()
    ledger = threading.Thread(target=run, args=(settings, stop), kwargs={"scan_seconds": LONG})
    journal = Journal(settings.journal_path)
    journal.set_gate("accepting", 1)
    sockets = MeshSockets(settings)
    try:
        ledger.start()
        extractor = sockets.connect(zmq.PULL, settings.dispatch_endpoint, hwm=64)
        signal = AppendSignal(sockets, settings.journal_appends_endpoint)
        journal.append([Entry("first", "Pub", "text")])
        ids: list[str] = []
        deadline = time.monotonic() + 10
        while not ids and time.monotonic() < deadline:  # until the ledger is up and heard
            signal.rows_appended()
            ids = received(extractor, 0.1)
        assert ids == ["first"]

        journal.append([Entry("quiet", "Pub", "text")])
        assert received(extractor, 1.0) == []  # no signal: still in the journal
        signal.rows_appended()
        assert received(extractor, 5.0) == ["quiet"]
    finally:
        stop.set()
        signal.rows_appended()  # wakes the loop to see the flag
        ledger.join(timeout=10)
        sockets.close()
        journal.close()
    assert not ledger.is_alive()
