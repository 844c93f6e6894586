"""The ledger's loop over real sockets sleeps until a frontend worker signals that it
journaled rows: it does not look at the journal every few milliseconds on its own."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from common.config import load_settings
from common.lifecycle import StopFlag
from common.sockets import MeshSockets
from services.extractor.inbox import WANT_REPEAT_SECONDS, Inbox
from services.frontend.appends import AppendSignal
from services.frontend.journal import Entry, Journal
from services.frontend.ledger.__main__ import run

LONG = 60.0  # the ledger's own poll and lease scan: far beyond this test


def received(inbox: Inbox, seconds: float) -> list[str]:
    """The ids of the articles the ledger answered the inbox's ask with within `seconds`."""
    return [article.id for article in inbox.receive(int(seconds * 1000))]


def test_the_ledger_dispatches_on_a_signal_not_on_a_timer(tmp_path: Path):
    settings = load_settings({}, data_dir=str(tmp_path), ledger_poll_seconds=LONG)
    stop = StopFlag()
    ledger = threading.Thread(target=run, args=(settings, stop), kwargs={"scan_seconds": LONG})
    journal = Journal(settings.journal_path)
    journal.set_gate("accepting", 1)
    sockets = MeshSockets(settings)
    try:
        ledger.start()
        inbox = Inbox(sockets, {"local": settings.dispatch_endpoint}, room=64)
        signal = AppendSignal(sockets, settings.journal_appends_endpoint)
        journal.append([Entry("first", "Pub", "text")])
        ids: list[str] = []
        deadline = time.monotonic() + 10
        while not ids and time.monotonic() < deadline:  # until the ledger is up and heard
            signal.rows_appended()
            ids = received(inbox, 0.1)
        assert ids == ["first"]

        # The inbox asks again (the ledger reads the journal on an ask: nothing), then a
        # row is journaled with no signal. The ask is repeated only after a second.
        asked = time.monotonic()
        assert received(inbox, 0.2) == []
        journal.append([Entry("quiet", "Pub", "text")])
        assert received(inbox, 0.5) == []  # no signal: still in the journal
        assert time.monotonic() - asked < WANT_REPEAT_SECONDS
        signal.rows_appended()
        assert received(inbox, 5.0) == ["quiet"]
    finally:
        stop.set()
        signal.rows_appended()  # wakes the loop to see the flag
        ledger.join(timeout=10)
        sockets.close()
        journal.close()
    assert not ledger.is_alive()
