"""The ledger process: the one dispatcher of a frontend host's intake journal.

Pattern: a credit-windowed pipeline with acknowledgements (ZeroMQ guide, "reliable
pipeline"). It reads the journal in commit order, PUSHes at most `window` unacknowledged
articles to the extractors, deletes the rows savers acknowledge, and re-sends what is late
(the bookkeeping is `dispatcher.Ledger`).

    dispatch  PUSH  bind  settings.dispatch_endpoint  -> extractors (connect, PULL)
    replies   PULL  bind  settings.ack_endpoint       <- savers' Acks, extractors' Failures
"""

from __future__ import annotations

import logging
import time

import msgspec
import zmq

from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import Ack, Article, Failure, decode, encode
from common.sockets import open_socket
from services.frontend.journal import Journal, Row
from services.frontend.ledger.dispatcher import EXPIRY_SCAN_SECONDS, Ledger

log = logging.getLogger("ledger")


def run(settings: Settings, stop: StopFlag) -> None:
    context = zmq.Context()
    dispatch = open_socket(
        context, zmq.PUSH, settings.dispatch_endpoint, bind=True, hwm=settings.window
    )
    replies = open_socket(context, zmq.PULL, settings.ack_endpoint, bind=True)

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
    control = ControlLink(settings, "ledger", lambda: snapshot).start()
    poll_ms = int(settings.ledger_poll_seconds * 1000)
    next_scan = 0.0
    log.info("ledger up", extra={"window": settings.window, "lease": settings.lease_seconds})
    try:
        while not stop:
            # Replies: acks from savers (committed: forget them), failures from extractors.
            if replies.poll(poll_ms):
                acked: list[str] = []
                for message in _drain(replies):
                    if isinstance(message, Ack):
                        acked += message.ids
                    elif isinstance(message, Failure):
                        ledger.failed(message.id, message.error, retryable=message.retryable)
                ledger.acknowledged(acked)

            # Leases that ran out: send again, before anything new.
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + EXPIRY_SCAN_SECONDS
                snapshot = ledger.counters()
                resends = ledger.due()
                if resends:
                    log.warning(
                        "re-sending %d unacknowledged articles",
                        len(resends),
                        extra={"article_ids": [r.id for r in resends]},
                    )
                    ledger.sent(_send(dispatch, resends, settings.ack_endpoint))

            # Journaled articles never sent, as far as the window allows.
            ledger.sent(_send(dispatch, ledger.fresh(), settings.ack_endpoint))
    finally:
        control.stop()
        dispatch.close()
        replies.close()
        context.term()
        journal.close()
        log.info("ledger stopped", extra={"in_flight": len(ledger.in_flight)})


def _drain(socket: zmq.Socket) -> list[object]:
    messages = []
    while True:
        try:
            messages.append(decode(socket.recv(zmq.NOBLOCK)))
        except zmq.Again:
            return messages
        except msgspec.DecodeError as exc:
            log.warning("undecodable reply: %s", exc)


def _send(socket: zmq.Socket, rows: list[Row], ack_to: str) -> list[Row]:
    """Send what the extractors take now; return the rows actually sent."""
    for n, row in enumerate(rows):
        frame = encode(Article(row.id, row.publication, row.content, ack_to))
        try:
            socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return rows[:n]  # no extractor connected, or all are full: next round
    return rows


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "ledger")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
