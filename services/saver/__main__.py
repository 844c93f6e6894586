"""Saver: takes extraction results from the saver inlet, commits them, acknowledges.

Pattern: pipeline sink with acknowledgements. Results are committed with their article
markers in one store transaction; only after the commit does the saver PUSH the ids back to
the ledger named in each result. A crash before the ack loses nothing (the ledger re-sends;
the markers make the re-delivery add nothing). It binds nothing, so it scales with
`incr saver`.

    inbox  DEALER  connect  settings.results_out_endpoint  <- saver inlet ([route key, result])
    acks   PUSH    connect  settings.ledger_ack_endpoints   -> ledgers (Ack, or Failure)

The saver tells the inlet it is there (SAVER_READY, every second); the inlet sends it every
result of the publications it owns. When to commit which results is `schedule`; a commit
with its poison isolation is `commits`; the document write-rate audit is `audit`.
"""

from __future__ import annotations

import contextlib
import logging
import time

import zmq

from common import metrics
from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import (
    SAVER_READY,
    SAVER_READY_SECONDS,
    Ack,
    Acked,
    Extraction,
    Failure,
    encode,
)
from common.sockets import LedgerReplies, MeshSockets, receive_pairs
from common.store import Store
from services.saver.audit import DocumentWrites, documents_of
from services.saver.commits import Outcome, commit
from services.saver.schedule import CommitSchedule, Group
from store import open_store

log = logging.getLogger("saver")

# Results taken off the socket per wake-up, so commits and heartbeats keep their turn.
RECEIVE_LIMIT = 4096


def schedule_for(settings: Settings) -> CommitSchedule:
    """Firestore: one group per publication, paced to the document write budget (the saver
    inlet gives each publication to one saver). SQLite: one group, committed as fast as the
    store takes it."""
    firestore = settings.store == "firestore"
    return CommitSchedule(
        per_publication=firestore,
        min_interval=1.0 / settings.firestore_document_writes_per_second if firestore else 0.0,
        gather_seconds=settings.flush_seconds,
        max_articles=settings.flush_max_articles,
        quiet_seconds=settings.flush_quiet_seconds,
    )


class Saver:
    """The loop of one saver process: receive, commit what is due, acknowledge."""

    def __init__(self, settings: Settings, store: Store, sockets: MeshSockets) -> None:
        self.store = store
        self.inbox = sockets.connect(zmq.DEALER, settings.results_out_endpoint)
        self.replies = LedgerReplies(sockets, settings.ledger_ack_endpoints())
        self.schedule = schedule_for(settings)
        self.writes = DocumentWrites()
        self.counters: dict[str, float] = {
            "committed": 0,
            "duplicates": 0,
            "commits": 0,
            "poison": 0,
            "waiting": 0,
            "hottest_writes_per_s": 0.0,
        }
        self._next_ready = 0.0

    def run(self, stop: StopFlag) -> None:
        while not stop:
            self._say_ready()
            if self.inbox.poll(self._poll_ms()):
                self._receive()
            while not stop and (due := self.schedule.next_due()):
                self._commit(*due)
                self._say_ready()
            self.counters["waiting"] = self.schedule.waiting()

    def _poll_ms(self) -> int:
        wait = min(1.0, max(0.0, self._next_ready - time.monotonic()))
        due = self.schedule.seconds_to_next()
        if due is not None:
            wait = min(wait, due)
        return max(1, int(wait * 1000))

    def _say_ready(self) -> None:
        now = time.monotonic()
        if now < self._next_ready:
            return
        self._next_ready = now + SAVER_READY_SECONDS
        with contextlib.suppress(zmq.Again):  # the inlet is away: it hears the next one
            self.inbox.send(SAVER_READY, zmq.NOBLOCK)

    def _receive(self) -> None:
        """Queue what the socket holds; a message that is not [route key, Extraction]
        is dropped (and logged), never committed."""
        for _, message in receive_pairs(self.inbox, RECEIVE_LIMIT, log, "saver inbox"):
            if isinstance(message, Extraction):
                self.schedule.add(message)

    def _commit(self, group: Group, results: list[Extraction]) -> None:
        try:
            outcome = commit(self.store, results)
        except Exception as error:
            delay = self.schedule.failed(group)
            metrics.COMMIT_FAILURES.inc()
            log.error(
                "commit failed; this group backs off",
                exc_info=error,
                extra={"group": group.key, "articles": len(results), "retry_in": delay},
            )
            return
        self.schedule.committed(group, outcome.settled)
        self._account(outcome)
        _acknowledge(self.replies, outcome.committed)
        _reject(self.replies, outcome.poison)

    def _account(self, outcome: Outcome) -> None:
        duplicates = len(outcome.committed) - len(outcome.counted)
        counted = set(outcome.counted)
        written = documents_of(r for r in outcome.committed if r.id in counted)
        self.writes.record(written)
        _, rate = self.writes.hottest()
        self.counters["commits"] += 1
        self.counters["committed"] += len(outcome.counted)
        self.counters["duplicates"] += duplicates
        self.counters["poison"] += len(outcome.poison)
        self.counters["hottest_writes_per_s"] = rate
        metrics.COMMITTED.inc(len(outcome.counted))
        metrics.DUPLICATES.inc(duplicates)
        metrics.POISON.inc(len(outcome.poison))
        metrics.DOCUMENT_WRITES.inc(len(written))
        metrics.HOTTEST_DOCUMENT_RATE.set(rate)


def _acknowledge(replies: LedgerReplies, committed: list[Extraction]) -> None:
    by_ledger: dict[str, list[Acked]] = {}
    for result in committed:
        by_ledger.setdefault(result.ledger, []).append(Acked(result.id, result.token))
    for ledger, acked in by_ledger.items():
        if not replies.send(ledger, encode(Ack(acked))):
            log.warning("ack not delivered", extra={"ledger": ledger, "articles": len(acked)})


def _reject(replies: LedgerReplies, poison: list[tuple[Extraction, str]]) -> None:
    for result, error in poison:
        replies.send(result.ledger, encode(Failure(result.id, result.token, error, False)))


def run(settings: Settings, stop: StopFlag) -> None:
    store = open_store(settings)
    sockets = MeshSockets(settings)
    saver = Saver(settings, store, sockets)
    control = ControlLink(settings, "saver", lambda: dict(saver.counters)).start()
    log.info("saver up", extra={"store": settings.store})
    try:
        saver.run(stop)
    finally:
        control.stop()
        sockets.close()
        store.close()
        log.info("saver stopped")


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "saver")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
