"""Saver: PULLs extraction results, commits them in coalesced batches, acknowledges.

Pattern: pipeline sink with acknowledgements. A batch is committed with its article markers
in one store transaction; only after the commit does the saver PUSH the ids back to the
ledger named in each result. A crash before the ack loses nothing (the ledger re-sends; the
markers make the re-delivery add nothing). It binds nothing, so it scales with `incr saver`.

    inbox  PULL  connect  settings.results_out_endpoint   <- saver inlet
    acks   PUSH  connect  settings.ledger_ack_endpoints   -> ledgers (Ack, or Failure for poison)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import tenacity
import zmq

from common import metrics
from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import Ack, Acked, Extraction, Failure, decode_or_drop, encode
from common.sockets import LedgerReplies, MeshSockets
from common.store import Store
from store import open_store

log = logging.getLogger("saver")

MAX_RETRY_SECONDS = 10.0


def run(settings: Settings, stop: StopFlag) -> None:
    store = open_store(settings)
    sockets = MeshSockets(settings)
    inbox = sockets.connect(zmq.PULL, settings.results_out_endpoint)
    replies = LedgerReplies(sockets, settings.ledger_ack_endpoints())
    counters = {"committed": 0, "duplicates": 0, "commits": 0, "poison": 0}
    control = ControlLink(settings, "saver", lambda: dict(counters)).start()
    log.info("saver up", extra={"store": settings.store})
    try:
        while not stop:
            # Results: gather one flush worth, commit it, then acknowledge it.
            batch = _collect(inbox, settings.flush_max_articles, settings.flush_interval)
            if not batch:
                continue
            outcome = _commit(store, batch, stop)
            if outcome is None:
                continue
            counters["commits"] += 1
            counters["committed"] += len(outcome.counted)
            counters["duplicates"] += len(outcome.committed) - len(outcome.counted)
            counters["poison"] += len(outcome.poison)
            metrics.COMMITTED.inc(len(outcome.counted))
            metrics.DUPLICATES.inc(len(outcome.committed) - len(outcome.counted))
            metrics.POISON.inc(len(outcome.poison))
            _acknowledge(replies, outcome.committed)
            _reject(replies, outcome.poison)
    finally:
        control.stop()
        sockets.close()
        store.close()
        log.info("saver stopped")


def _collect(inbox: zmq.Socket, limit: int, seconds: float) -> list[Extraction]:
    """Wait for a first result, then gather more for up to `seconds` or `limit` results.
    A frame that is not a valid Extraction is dropped (and logged), never committed."""
    if not inbox.poll(1000):
        return []
    batch: list[Extraction] = []
    deadline = time.monotonic() + seconds
    while len(batch) < limit:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0 or not inbox.poll(remaining_ms):
            break
        while len(batch) < limit:
            try:
                frame = inbox.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            message = decode_or_drop(frame, log, "saver inbox")
            if isinstance(message, Extraction):
                batch.append(message)
    return batch


@dataclass
class Outcome:
    committed: list[Extraction]  # in the store now (newly, or counted before)
    counted: list[str]  # ids newly counted by this commit
    poison: list[tuple[Extraction, str]]  # refused by the store for good, with the error


def _commit(store: Store, batch: list[Extraction], stop: StopFlag) -> Outcome | None:
    """Commit the batch, retrying what may pass later; None if stopped first (nothing
    acknowledged: the ledger re-sends).

    A store error that retrying cannot fix (`store.poison(error)`: an invalid value, a
    document too large) is about some article of the batch: the batch is then committed one
    article at a time, so that article is set aside (a dead letter, with the error) and the
    others are counted. Every other error (store unreachable, locked, contention) is retried
    with exponential backoff and full jitter, for as long as it takes.
    """
    try:
        counted = _retrying(store, stop)(_timed_commit, store, batch)
    except Exception as error:  # a poison error: tenacity re-raises it at once
        log.warning("a store error no retry can fix; committing one by one", exc_info=error)
        return _commit_one_by_one(store, batch, stop)
    return None if counted is None else Outcome(batch, counted, [])


def _commit_one_by_one(store: Store, batch: list[Extraction], stop: StopFlag) -> Outcome | None:
    outcome = Outcome([], [], [])
    for extraction in batch:
        try:
            counted = _retrying(store, stop)(_timed_commit, store, [extraction])
        except Exception as error:
            log.error("article refused by the store", extra={"article_ids": [extraction.id]})
            outcome.poison.append((extraction, f"{type(error).__name__}: {error}"[:1000]))
            continue
        if counted is None:
            return None
        outcome.committed.append(extraction)
        outcome.counted += counted
    return outcome


def _retrying(store: Store, stop: StopFlag) -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda error: not store.poison(error)),
        wait=tenacity.wait_random_exponential(multiplier=0.1, max=MAX_RETRY_SECONDS),
        stop=lambda _: bool(stop),
        after=_log_failure,
        retry_error_callback=lambda _: None,
        reraise=True,
    )


def _timed_commit(store: Store, batch: list[Extraction]) -> list[str]:
    started = time.perf_counter()
    counted = store.commit(batch)
    seconds = time.perf_counter() - started
    metrics.COMMIT_SECONDS.observe(seconds)
    log.debug("committed", extra={"articles": len(batch), "new": len(counted), "seconds": seconds})
    return counted


def _log_failure(attempt: tenacity.RetryCallState) -> None:
    metrics.COMMIT_FAILURES.inc()
    error = attempt.outcome.exception() if attempt.outcome else None
    log.error(
        "commit failed; retrying",
        exc_info=error,
        extra={"attempt": attempt.attempt_number, "articles": len(attempt.args[1])},
    )


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


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "saver")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
