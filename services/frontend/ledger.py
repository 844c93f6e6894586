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
from collections import deque
from collections.abc import Callable

import msgspec
import zmq

from common import metrics
from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import Ack, Article, Failure, decode, encode
from common.sockets import open_socket
from services.frontend.journal import Journal, Row

log = logging.getLogger("ledger")

MAX_BACKOFF_FACTOR = 8
EXPIRY_SCAN_SECONDS = 0.5
RATE_WINDOW_SECONDS = 10.0


class Lease(msgspec.Struct):
    deadline: float
    attempts: int  # dispatches so far, this one included


class AckRate:
    """Acknowledged articles per second over the last few seconds."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._events: deque[tuple[float, int]] = deque()
        self._started = now()

    def add(self, count: int) -> None:
        self._events.append((self._now(), count))

    def per_second(self) -> float | None:
        now = self._now()
        while self._events and self._events[0][0] < now - RATE_WINDOW_SECONDS:
            self._events.popleft()
        span = min(RATE_WINDOW_SECONDS, now - self._started)
        if not self._events or span < 1.0:
            return None
        return sum(n for _, n in self._events) / span


class Ledger:
    """What is dispatched and not yet acknowledged; no sockets, so tests drive it directly.

    The window adapts: at most as many articles in flight as the mesh acknowledges in half
    a lease (never fewer than `min_window`, never more than `window`), so an article waits
    in queues for well under its lease and an undisturbed run re-sends nothing, however
    long the backlog and however short the lease.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        window: int,
        min_window: int,
        lease_seconds: float,
        max_attempts: int,
        retry_seconds: float = 1.0,
        now: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.journal = journal
        self.window = window
        self.min_window = min(min_window, window)
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.in_flight: dict[str, Lease] = {}
        self.cursor = 0  # highest journal seq ever dispatched by this ledger
        self.counts = {"dispatched": 0, "redelivered": 0, "acknowledged": 0, "dead_lettered": 0}
        self._rate = AckRate(now)
        self._now = now
        self._jitter = jitter

    def current_window(self) -> int:
        rate = self._rate.per_second()
        if rate is None:
            return self.min_window
        return max(self.min_window, min(self.window, int(rate * self.lease_seconds / 2)))

    def fresh(self) -> list[Row]:
        """Journal rows never dispatched, as many as the window allows."""
        credit = self.current_window() - len(self.in_flight)
        return self.journal.after(self.cursor, credit) if credit > 0 else []

    def due(self) -> list[Row]:
        """Rows whose lease ran out, to send again; those out of attempts are dead-lettered."""
        now = self._now()
        late = [i for i, lease in self.in_flight.items() if lease.deadline <= now]
        rows = self.journal.rows(late)
        for gone in set(late) - {row.id for row in rows}:
            # Deleted from the journal by an ack of an earlier dispatch: nothing to resend.
            del self.in_flight[gone]
        spent = [r for r in rows if r.attempts >= self.max_attempts]
        self._bury({r.id: f"not acknowledged after {r.attempts} attempts" for r in spent})
        return [r for r in rows if r.attempts < self.max_attempts]

    def sent(self, rows: list[Row]) -> None:
        """Record one more dispatch of each row, with its lease."""
        if not rows:
            return
        self.journal.record_attempts([r.id for r in rows])
        now = self._now()
        for row in rows:
            attempts = row.attempts + 1
            factor = min(2 ** (attempts - 1), MAX_BACKOFF_FACTOR) * (1 + 0.25 * self._jitter())
            self.in_flight[row.id] = Lease(now + self.lease_seconds * factor, attempts)
            self.cursor = max(self.cursor, row.seq)
            if attempts > 1:
                self.counts["redelivered"] += 1
                metrics.REDELIVERED.inc()
        self.counts["dispatched"] += len(rows)
        metrics.DISPATCHED.inc(len(rows))

    def acknowledged(self, ids: list[str]) -> None:
        self.journal.delete(ids)
        self._rate.add(len(ids))
        self.counts["acknowledged"] += len(ids)
        metrics.ACKNOWLEDGED.inc(len(ids))
        for ident in ids:
            self.in_flight.pop(ident, None)

    def failed(self, ident: str, error: str) -> None:
        """An extractor could not process the article: retry soon, or give up on it."""
        lease = self.in_flight.get(ident)
        if lease is None:
            return
        if lease.attempts >= self.max_attempts:
            self._bury({ident: error})
        else:
            delay = min(self.retry_seconds * 2 ** (lease.attempts - 1), self.lease_seconds)
            lease.deadline = self._now() + delay * (1 + 0.25 * self._jitter())

    def _bury(self, errors: dict[str, str]) -> None:
        if not errors:
            return
        self.journal.bury(errors)
        for ident in errors:
            self.in_flight.pop(ident, None)
        self.counts["dead_lettered"] += len(errors)
        metrics.DEAD_LETTERED.inc(len(errors))
        log.error("dead-lettered", extra={"article_ids": sorted(errors), "errors": errors})

    def counters(self) -> dict[str, float]:
        """What the ledger reports to control: the journal backlog and its own counts."""
        backlog = self.journal.backlog()
        dead_letters = self.journal.dead_letter_count()
        metrics.BACKLOG.set(backlog.articles)
        metrics.OLDEST_AGE.set(backlog.oldest_age_seconds or 0.0)
        metrics.DEAD_LETTERS.set(dead_letters)
        metrics.IN_FLIGHT.set(len(self.in_flight))
        return {
            "journal_checked_at": time.time(),  # wall clock: drain waits for a fresh look
            "backlog": backlog.articles,
            "oldest_age_seconds": backlog.oldest_age_seconds or 0.0,
            "dead_letters": dead_letters,
            "in_flight": len(self.in_flight),
            "window": self.current_window(),
            "ack_rate": self._rate.per_second() or 0.0,
            **self.counts,
        }


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
        min_window=settings.min_window,
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
                        ledger.failed(message.id, message.error)
                ledger.acknowledged(acked)

            # Leases that ran out: send again, before anything new.
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + EXPIRY_SCAN_SECONDS
                snapshot = ledger.counters()
                resends = ledger.due()
                if resends:
                    log.warning("re-sending %d unacknowledged articles", len(resends))
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
