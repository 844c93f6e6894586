"""Saver: PULLs extraction results, commits them in coalesced batches, acknowledges.

Pattern: pipeline sink with acknowledgements. A batch is committed with its article markers
in one store transaction; only after the commit does the saver PUSH the ids back to the
ledger named in each result. A crash before the ack loses nothing (the ledger re-sends; the
markers make the re-delivery add nothing). It binds nothing, so it scales with `incr saver`.

    inbox  PULL  connect  settings.results_out_endpoint  <- saver inlet
    acks   PUSH  connect  <ack_to of each result>        -> ledgers
"""

from __future__ import annotations

import logging
import time

import tenacity
import zmq

from common import metrics
from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import Ack, Extraction, decode, encode
from common.sockets import LedgerReplies, open_socket
from common.store import Store
from store import open_store

log = logging.getLogger("saver")

MAX_RETRY_SECONDS = 10.0


def run(settings: Settings, stop: StopFlag) -> None:
    store = open_store(settings)
    context = zmq.Context()
    inbox = open_socket(context, zmq.PULL, settings.results_out_endpoint, bind=False)
    replies = LedgerReplies(context)
    counters = {"committed": 0, "duplicates": 0, "commits": 0}
    control = ControlLink(settings, "saver", lambda: dict(counters)).start()
    log.info("saver up", extra={"store": settings.store})
    try:
        while not stop:
            # Results: gather one flush worth, commit it, then acknowledge it.
            batch = _collect(inbox, settings.flush_max_articles, settings.flush_interval)
            if not batch:
                continue
            counted = _commit(store, batch, stop)
            if counted is None:
                continue
            counters["commits"] += 1
            counters["committed"] += len(counted)
            counters["duplicates"] += len(batch) - len(counted)
            metrics.COMMITTED.inc(len(counted))
            metrics.DUPLICATES.inc(len(batch) - len(counted))
            _acknowledge(replies, batch)
    finally:
        control.stop()
        inbox.close()
        replies.close()
        context.term()
        store.close()
        log.info("saver stopped")


def _collect(inbox: zmq.Socket, limit: int, seconds: float) -> list[Extraction]:
    """Wait for a first result, then gather more for up to `seconds` or `limit` results."""
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
                message = decode(inbox.recv(zmq.NOBLOCK))
            except zmq.Again:
                break
            if isinstance(message, Extraction):
                batch.append(message)
    return batch


def _commit(store: Store, batch: list[Extraction], stop: StopFlag) -> list[str] | None:
    """Commit, retrying with exponential backoff and full jitter until it succeeds; the ids
    newly counted, or None if stopped first (nothing acknowledged: the ledger re-sends)."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Exception),
        wait=tenacity.wait_random_exponential(multiplier=0.1, max=MAX_RETRY_SECONDS),
        stop=lambda _: bool(stop),
        after=_log_failure,
        retry_error_callback=lambda _: None,
    )
    return retrying(_timed_commit, store, batch)


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


def _acknowledge(replies: LedgerReplies, batch: list[Extraction]) -> None:
    by_ledger: dict[str, list[str]] = {}
    for result in batch:
        by_ledger.setdefault(result.ack_to, []).append(result.id)
    for endpoint, ids in by_ledger.items():
        if not replies.send(endpoint, encode(Ack(ids))):
            log.warning("ack not delivered", extra={"ledger": endpoint, "articles": len(ids)})


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "saver")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
