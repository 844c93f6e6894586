"""The ledger's bookkeeping: what is dispatched, when it is late, what is dead.

The frontend workers only journal; the ledger process (`__main__`) reads the journal in
commit order and PUSHes at most `window` unacknowledged articles to the extractors. Savers
PUSH back the ids they committed; the ledger deletes those rows. An article unacknowledged
for a lease (backing off on each attempt) is sent again; the store's markers make that
harmless. Bounding the work in flight keeps memory flat, and a lease counts from an
article's turn (everything dispatched before it is done), so a long queue is never mistaken
for loss and a long backlog causes no redelivery storm. No sockets here: tests drive it
directly.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable

import msgspec

from common import metrics
from services.frontend.journal import Journal, Row

log = logging.getLogger("ledger")

MAX_BACKOFF_FACTOR = 8
# Dead letters whose dispatch tokens are remembered, so that a late ack can clear them.
MAX_BURIED_REMEMBERED = 100_000
EXPIRY_SCAN_SECONDS = 0.5
RATE_WINDOW_SECONDS = 10.0


class Lease(msgspec.Struct):
    """One dispatched article. Its lease clock starts only once everything dispatched before
    it is done: an article waiting behind a long queue is late only after that."""

    attempts: int  # dispatches so far, this one included
    sent_at: float
    length: float  # this attempt's lease: lease_seconds, doubled per attempt, capped, jittered
    ahead_done_at: int  # the ledger's `done` count at which all that was ahead of it is done
    tokens: set[int]  # every dispatch token this ledger issued for it: an ack must carry one
    accepted_at: float  # wall-clock time it was journaled (on this host: the same clock)
    clock_from: float | None = None
    retry_at: float | None = None  # an extractor reported a failure: resend at this time


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

    Leases count from the moment an article reaches the head of the queue, not from its
    dispatch: an article is sent again only when everything dispatched before it has been
    acknowledged and then a full lease has passed (or nothing at all was acknowledged for
    two leases). The lease must exceed about two extractor batches (the head of the queue
    may wait for the batch in progress, then its own).
    So an undisturbed run re-sends nothing however long the backlog and however short the
    lease, and an article lost with a dead process comes back one lease after its turn.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        window: int,
        lease_seconds: float,
        max_attempts: int,
        retry_seconds: float = 1.0,
        now: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.journal = journal
        self.window = window
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.in_flight: dict[str, Lease] = {}
        self.cursor = 0  # highest journal seq ever dispatched by this ledger
        self.counts = {
            "dispatched": 0,
            "redelivered": 0,
            "acknowledged": 0,
            "dead_lettered": 0,
            "dead_letters_cleared": 0,
            "acks_refused": 0,
        }
        self._buried_tokens: dict[str, set[int]] = {}
        self.done = 0  # in-flight articles that left the queue (acknowledged or set aside)
        self._last_progress = now()
        self._rate = AckRate(now)
        self._now = now
        self._wall = wall
        self._jitter = jitter

    def fresh(self, limit: int | None = None) -> list[Row]:
        """Journal rows never dispatched, as many as the window allows (and at most
        `limit`)."""
        credit = self.window - len(self.in_flight)
        if limit is not None:
            credit = min(credit, limit)
        return self.journal.after(self.cursor, credit) if credit > 0 else []

    def undispatched(self) -> int:
        """Journal rows never dispatched (an upper bound: seqs may have gaps)."""
        return max(0, self.journal.last_seq() - self.cursor)

    def due(self) -> list[Row]:
        """Rows whose lease ran out, to send again.

        A lease that ran out while the rest of the pipeline made progress (an ack arrived
        after this article's turn came) is evidence against the article: it was lost, or it
        took its extractor down, while others got through. That burns one of its
        `max_attempts`, and an article out of them is dead-lettered. A stall (nothing
        acknowledged at all: store down, every saver stuck) is no evidence about anyone: it
        re-sends, burns nothing, and a stall of any length dead-letters nothing.
        """
        now = self._now()
        late: list[str] = []
        suspects: list[str] = []
        for ident, lease in self.in_flight.items():
            if lease.clock_from is None and self.done >= lease.ahead_done_at:
                lease.clock_from = now
            if lease.retry_at is not None:
                if now >= lease.retry_at:
                    late.append(ident)  # its failure was counted when it was reported
            elif lease.clock_from is not None and now - lease.clock_from >= lease.length:
                late.append(ident)
                if self._last_progress > lease.clock_from:
                    suspects.append(ident)
            elif now - max(self._last_progress, lease.sent_at) >= 2 * lease.length:
                # Nothing acknowledged at all for two leases since it was sent: what is
                # ahead of it is lost too (or the store is down: the window bounds the cost).
                late.append(ident)
        rows = self.journal.rows(late)
        for gone in set(late) - {row.id for row in rows}:
            # Deleted from the journal by an ack of an earlier dispatch: nothing to resend.
            self._forget(gone)
        failures = self.journal.record_failures(suspects) if suspects else {}
        spent = {i: n for i, n in failures.items() if n >= self.max_attempts}
        self._bury(
            {
                i: f"lost {n} times while the rest of the pipeline made progress "
                "(did it bring its extractor or saver down?)"
                for i, n in spent.items()
            }
        )
        return [r for r in rows if r.id not in spent]

    def token(self) -> int:
        """A fresh dispatch token: unguessable, so only a process that received the article
        can acknowledge it."""
        return secrets.randbits(63)

    def sent(self, rows: list[Row], tokens: list[int] | None = None) -> None:
        """Record one more dispatch of each row, with its lease and the token it carried."""
        if not rows:
            return
        tokens = tokens or [self.token() for _ in rows]
        self.journal.record_attempts([r.id for r in rows])
        now = self._now()
        for row, token in zip(rows, tokens, strict=True):
            attempts = row.attempts + 1
            factor = min(2 ** (attempts - 1), MAX_BACKOFF_FACTOR) * (1 + 0.25 * self._jitter())
            # A re-sent article joins the back of the queue; its earlier dispatch is not
            # counted as done (it may still be queued), its acknowledgement will be.
            earlier = self.in_flight.pop(row.id, None)
            ahead = len(self.in_flight)
            self.in_flight[row.id] = Lease(
                attempts=attempts,
                sent_at=now,
                length=self.lease_seconds * factor,
                ahead_done_at=self.done + ahead,
                tokens={token} | (earlier.tokens if earlier else set()),
                accepted_at=row.accepted_at,
                clock_from=now if ahead == 0 else None,
            )
            self.cursor = max(self.cursor, row.seq)
            if attempts > 1:
                self.counts["redelivered"] += 1
                metrics.REDELIVERED.inc()
        self.counts["dispatched"] += len(rows)
        metrics.DISPATCHED.inc(len(rows))

    def acknowledged(self, acked: list[tuple[str, int]]) -> None:
        """Forget committed articles: only those whose token is one this ledger issued (an
        ack of anything else, forged or from an earlier ledger process, changes nothing)."""
        ids = [ident for ident, token in acked if self._issued(ident, token)]
        if len(ids) < len(acked):
            self.counts["acks_refused"] += len(acked) - len(ids)
            metrics.ACKS_REFUSED.inc(len(acked) - len(ids))
            log.warning("acks for nothing in flight ignored", extra={"acks": len(acked) - len(ids)})
        if not ids:
            return
        cleared = self.journal.delete(ids)
        if cleared:
            # Counted after all (its ack was late): it is no dead letter any more.
            self.counts["dead_letters_cleared"] += cleared
            log.warning("a late ack cleared %d dead letter(s)", cleared)
        self._observe_freshness(ids)
        for ident in ids:
            self._buried_tokens.pop(ident, None)
        self._rate.add(len(ids))
        self.counts["acknowledged"] += len(ids)
        metrics.ACKNOWLEDGED.inc(len(ids))
        if sum(self._forget(ident) for ident in ids):
            self._last_progress = self._now()

    def _observe_freshness(self, ids: list[str]) -> None:
        """Seconds from each article's acceptance (its 202) to its ack, which follows the
        commit that made its counts readable: an upper bound of its freshness. Both times are
        this host's wall clock (the frontend that journaled it runs here)."""
        now = self._wall()
        for ident in ids:
            lease = self.in_flight.get(ident)
            if lease is not None:
                metrics.FRESHNESS.observe(max(0.0, now - lease.accepted_at))

    def _issued(self, ident: str, token: int) -> bool:
        lease = self.in_flight.get(ident)
        if lease is not None:
            return token in lease.tokens
        return token in self._buried_tokens.get(ident, ())

    def _forget(self, ident: str) -> bool:
        if self.in_flight.pop(ident, None) is None:
            return False
        self.done += 1
        return True

    def released(self, articles: list[tuple[str, int]]) -> int:
        """An extractor gave these back unprocessed (it is stopping): send them again at
        the next lease scan, with no failure counted. Only with a token this ledger issued
        for the article; returns how many were taken back."""
        now = self._now()
        taken = 0
        for ident, token in articles:
            lease = self.in_flight.get(ident)
            if lease is not None and token in lease.tokens:
                lease.retry_at = now
                taken += 1
        return taken

    def failed(self, ident: str, token: int, error: str, *, retryable: bool = True) -> None:
        """An article could not be processed: evidence against it. Retry soon, or give up on
        it (at once when the failure is deterministic: a retry would fail the same way).
        Like an ack, a failure counts only with a token this ledger issued for it."""
        lease = self.in_flight.get(ident)
        if lease is None or token not in lease.tokens:
            return
        failures = self.journal.record_failures([ident]).get(ident, 0)
        if not retryable or failures >= self.max_attempts:
            self._bury({ident: error})
        else:
            delay = min(self.retry_seconds * 2 ** (failures - 1), self.lease_seconds)
            lease.retry_at = self._now() + delay * (1 + 0.25 * self._jitter())

    def _bury(self, errors: dict[str, str]) -> None:
        if not errors:
            return
        self.journal.bury(errors)
        for ident in errors:
            lease = self.in_flight.get(ident)
            if lease is not None:
                # A late ack of one of its dispatches still clears the dead letter.
                self._buried_tokens[ident] = lease.tokens
                while len(self._buried_tokens) > MAX_BURIED_REMEMBERED:
                    self._buried_tokens.pop(next(iter(self._buried_tokens)))
            self._forget(ident)
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
            # The backlog was counted in one snapshot with the gate at this seq: once the
            # gate is closed, drain can trust a zero from a look at or after its seq.
            "journal_gate_seq": backlog.gate_seq,
            "backlog": backlog.articles,
            "oldest_age_seconds": backlog.oldest_age_seconds or 0.0,
            "dead_letters": dead_letters,
            "in_flight": len(self.in_flight),
            "ack_rate": self._rate.per_second() or 0.0,
            **self.counts,
        }
