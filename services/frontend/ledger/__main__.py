"""The ledger process: the one dispatcher of a frontend host's intake journal.

Pattern: a credit-windowed pipeline with acknowledgements (ZeroMQ guide, "reliable
pipeline"). It reads the journal in commit order, PUSHes at most `window` unacknowledged
articles to the extractors, deletes the rows savers acknowledge, and re-sends what is late
(the bookkeeping is `dispatcher.Ledger`).

    dispatch  PUSH  bind  settings.dispatch_endpoint  -> extractors (connect, PULL)
    replies   PULL  bind  settings.ack_endpoint       <- savers' Acks, extractors' Failures
    appends   PULL  bind  settings.journal_appends_endpoint <- frontend workers: rows journaled
"""

from __future__ import annotations

import logging
import time

import zmq

from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import Ack, Article, Failure, Message, decode_or_drop, encode
from common.sockets import MeshSockets
from services.frontend.appends import listen, take_all
from services.frontend.journal import GateKeeper, Journal, Row
from services.frontend.ledger.dispatcher import EXPIRY_SCAN_SECONDS, Ledger

log = logging.getLogger("ledger")

DISPATCH_CHUNK = 64  # journal rows read at once for dispatch


def run(settings: Settings, stop: StopFlag, *, scan_seconds: float = EXPIRY_SCAN_SECONDS) -> None:
    sockets = MeshSockets(settings)
    # A short queue per extractor (and a short inbox in each): articles wait in the journal
    # until an extractor has room, not in the queue of one that is busy, so the last of a
    # burst is shared out evenly (docs/architecture.md, "Dispatch and extraction cost").
    dispatch = sockets.bind(zmq.PUSH, settings.dispatch_endpoint, hwm=settings.batch_size)
    replies = sockets.bind(zmq.PULL, settings.ack_endpoint)
    appends = listen(sockets, settings.journal_appends_endpoint)

    journal = Journal(settings.journal_path, synchronous=settings.journal_synchronous)
    ledger = Ledger(
        journal,
        window=settings.window,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
    )
    # The journal connection belongs to this thread: the control link's thread reads a
    # snapshot refreshed here, never the journal itself.
    snapshot: dict[str, float] = ledger.counters()
    # The ledger closes and opens its host's journal gate too: with every frontend worker
    # gone, a stop-writes is still applied where it matters.
    gate = GateKeeper(settings.journal_path, synchronous=settings.journal_synchronous)
    control = ControlLink(settings, "ledger", lambda: snapshot, apply=gate).start()
    poll_ms = int(settings.ledger_poll_seconds * 1000)
    next_scan = 0.0
    poller = zmq.Poller()
    poller.register(replies, zmq.POLLIN)
    waiting_for_room = polling_for_room = False
    poller.register(appends, zmq.POLLIN)
    log.info("ledger up", extra={"window": settings.window, "lease": settings.lease_seconds})
    try:
        while not stop:
            # Sleep until there is something to do: a reply; while rows wait for an
            # extractor's room, room; otherwise a frontend worker's signal that it journaled
            # rows (new rows change nothing while there is no room); the next lease scan;
            # and at the latest poll_ms, for a signal missed. Waking every 20 ms to look was
            # most of the ledger's CPU, loaded or idle (bench/RESULTS.md, "A mesh that sleeps").
            if waiting_for_room != polling_for_room:  # re-register only on a change
                poller.register(dispatch, zmq.POLLOUT if waiting_for_room else 0)
                poller.register(appends, 0 if waiting_for_room else zmq.POLLIN)
                polling_for_room = waiting_for_room
            until_scan = max(1, int((next_scan - time.monotonic()) * 1000))
            events = dict(poller.poll(until_scan if waiting_for_room else min(poll_ms, until_scan)))
            if appends in events:
                take_all(appends)  # the journal read below is what they asked for

            # Replies: acks from savers (committed: forget them), failures from extractors.
            if replies in events:
                acked: list[tuple[str, int]] = []
                for message in _drain(replies):
                    if isinstance(message, Ack):
                        acked += [(a.id, a.token) for a in message.articles]
                    elif isinstance(message, Failure):
                        ledger.failed(
                            message.id, message.token, message.error, retryable=message.retryable
                        )
                ledger.acknowledged(acked)

            # Leases that ran out: send again, before anything new.
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + scan_seconds
                # The look control asked for last, heard before this look: a drain believes
                # a zero only from a look that follows its own request (mesh.drain).
                heard = control.heard_look()
                snapshot = {**heard, **ledger.counters()}
                resends = ledger.due()
                if resends:
                    log.warning(
                        "re-sending %d unacknowledged articles",
                        len(resends),
                        extra={"article_ids": [r.id for r in resends]},
                    )
                    _send(dispatch, ledger, resends, settings.ledger_id)

            # Journaled articles never sent, as far as the window allows and while an
            # extractor has room.
            waiting_for_room = _send_fresh(dispatch, ledger, settings.ledger_id)
    finally:
        control.stop()
        sockets.close()
        journal.close()
        log.info("ledger stopped", extra={"in_flight": len(ledger.in_flight)})


def _drain(socket: zmq.Socket) -> list[Message]:
    """Every reply waiting now; a frame that is not one is dropped (and logged)."""
    messages = []
    while True:
        try:
            frame = socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            return messages
        message = decode_or_drop(frame, log, "ledger replies")
        if isinstance(message, Ack | Failure):
            messages.append(message)


def _send_fresh(socket: zmq.Socket, ledger: Ledger, ledger_id: str) -> bool:
    """Send never-dispatched rows while the extractors take them, reading the journal in
    chunks and only while the socket has room: with a short send queue (batch_size) most
    polls find it full, and reading a window's worth of rows each time cost more than the
    rest of the ledger's work. True if it stopped for lack of room (rows may be waiting),
    False if there was nothing more to send (or the window is full: acks wake the loop)."""
    while socket.getsockopt(zmq.EVENTS) & zmq.POLLOUT:
        rows = ledger.fresh(limit=DISPATCH_CHUNK)
        if not rows:
            return False
        if _send(socket, ledger, rows, ledger_id) < len(rows):
            return True
    return True


def _send(socket: zmq.Socket, ledger: Ledger, rows: list[Row], ledger_id: str) -> int:
    """Send what the extractors take now, each with a fresh token, and record it; returns
    how many rows went."""
    sent, tokens = [], []
    for row in rows:
        token = ledger.token()
        frame = encode(Article(row.id, row.publication, row.content, ledger_id, token))
        try:
            socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            break  # no extractor connected, or all are full: next round
        sent.append(row)
        tokens.append(token)
    ledger.sent(sent, tokens)
    return len(sent)


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "ledger")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
