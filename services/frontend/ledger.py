"""The ledger: the one dispatcher of a frontend host's intake journal.

Pattern: a credit-windowed pipeline with acknowledgements (ZeroMQ guide, "reliable
pipeline"). The frontend workers only journal; the ledger reads the journal in commit order
and PUSHes at most `window` unacknowledged articles to the extractors. Savers PUSH back the
ids they committed; the ledger deletes those rows. An article unacknowledged for a lease
(backing off on each attempt) is sent again; the store's markers make that harmless.

Bounding the work in flight is what keeps a lease meaningful: with at most `window`
articles queued, the queueing delay is at most window / throughput, so a lease longer than
that never mistakes a slow article for a lost one (no redelivery storm on a long backlog).

    dispatch  PUSH  bind  settings.dispatch_endpoint  -> extractors (connect, PULL)
    acks      PULL  bind  settings.ack_endpoint       <- savers (connect, PUSH)
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import msgspec
import zmq

from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import Ack, Article, decode, encode
from common.sockets import open_socket
from services.frontend.journal import Journal, Row

log = logging.getLogger("ledger")

MAX_BACKOFF_FACTOR = 8
EXPIRY_SCAN_SECONDS = 0.5


class Lease(msgspec.Struct):
    seq: int
    deadline: float
    attempts: int


class Ledger:
    """What is dispatched and not yet acknowledged; no sockets, so tests drive it directly."""

    def __init__(
        self,
        journal: Journal,
        *,
        window: int,
        lease_seconds: float,
        now: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.journal = journal
        self.window = window
        self.lease_seconds = lease_seconds
        self.in_flight: dict[str, Lease] = {}
        self.cursor = 0  # highest journal seq ever dispatched by this ledger
        self.dispatched = 0
        self.redelivered = 0
        self.acknowledged_total = 0
        self._now = now
        self._jitter = jitter

    def credit(self) -> int:
        return max(0, self.window - len(self.in_flight))

    def fresh(self) -> list[Row]:
        """Journal rows never dispatched, as many as the window allows."""
        credit = self.credit()
        return self.journal.after(self.cursor, credit) if credit else []

    def expired(self) -> list[Row]:
        now = self._now()
        late = [i for i, lease in self.in_flight.items() if lease.deadline <= now]
        rows = self.journal.rows(late)
        present = {row.id for row in rows}
        for gone in set(late) - present:
            # Deleted from the journal by an ack of an earlier dispatch: nothing to resend.
            del self.in_flight[gone]
        return rows

    def sent(self, row: Row, *, resend: bool) -> None:
        attempts = row.attempts + 1 if resend else row.attempts
        factor = min(2**attempts, MAX_BACKOFF_FACTOR) * (1 + 0.25 * self._jitter())
        self.in_flight[row.id] = Lease(row.seq, self._now() + self.lease_seconds * factor, attempts)
        self.cursor = max(self.cursor, row.seq)
        self.dispatched += 1
        if resend:
            self.redelivered += 1

    def acknowledged(self, ids: list[str]) -> None:
        self.journal.delete(ids)
        self.acknowledged_total += len(ids)
        for ident in ids:
            self.in_flight.pop(ident, None)

    def counters(self) -> dict[str, float]:
        """What the ledger reports to control: the journal backlog and its own counts."""
        backlog = self.journal.backlog()
        return {
            "journal_checked_at": time.time(),  # wall clock: drain waits for a fresh look
            "backlog": backlog.articles,
            "oldest_age_seconds": backlog.oldest_age_seconds or 0.0,
            "in_flight": len(self.in_flight),
            "dispatched": self.dispatched,
            "redelivered": self.redelivered,
            "acknowledged": self.acknowledged_total,
        }


def run(settings: Settings, stop: StopFlag) -> None:
    context = zmq.Context()
    dispatch = open_socket(
        context, zmq.PUSH, settings.dispatch_endpoint, bind=True, hwm=settings.window
    )
    acks = open_socket(context, zmq.PULL, settings.ack_endpoint, bind=True)

    journal = Journal(settings.journal_path, synchronous=settings.journal_synchronous)
    ledger = Ledger(journal, window=settings.window, lease_seconds=settings.lease_seconds)
    # The journal connection belongs to this thread: the control link's thread reads a
    # snapshot refreshed here, never the journal itself.
    snapshot: dict[str, float] = ledger.counters()
    control = ControlLink(settings, "ledger", lambda: snapshot).start()
    poll_ms = int(settings.ledger_poll_seconds * 1000)
    next_scan = 0.0
    log.info("ledger up", extra={"window": settings.window, "lease": settings.lease_seconds})
    try:
        while not stop:
            # Acks from savers: the articles are committed; forget them.
            if acks.poll(poll_ms):
                ids: list[str] = []
                while True:
                    try:
                        message = decode(acks.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    if isinstance(message, Ack):
                        ids += message.ids
                ledger.acknowledged(ids)

            # Leases that ran out: send again, before anything new.
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + EXPIRY_SCAN_SECONDS
                snapshot = ledger.counters()
                resends = ledger.expired()
                if resends:
                    journal.record_attempts([r.id for r in resends])
                    log.warning("re-sending %d unacknowledged articles", len(resends))
                    _send(dispatch, ledger, resends, settings.ack_endpoint, resend=True)

            # Journaled articles never sent, as far as the window allows.
            _send(dispatch, ledger, ledger.fresh(), settings.ack_endpoint, resend=False)
    finally:
        control.stop()
        dispatch.close()
        acks.close()
        context.term()
        journal.close()
        log.info("ledger stopped", extra={"in_flight": len(ledger.in_flight)})


def _send(socket: zmq.Socket, ledger: Ledger, rows: list[Row], ack_to: str, *, resend: bool):
    for row in rows:
        frame = encode(Article(row.id, row.publication, row.content, ack_to))
        try:
            socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            return  # no extractor connected, or all are full: try again next round
        ledger.sent(row, resend=resend)


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "ledger")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
