"""Extractor: PULLs articles, runs spaCy NER on batches, PUSHes one result per article.

Pattern: pipeline worker (ZeroMQ guide, "divide and conquer"). It binds nothing, so
`circusctl incr extractor` adds a worker with no port or configuration change.

    inbox    PULL  connect  settings.dispatch_endpoint    <- ledger
    outbox   PUSH  connect  settings.results_in_endpoint  -> saver inlet
    replies  PUSH  connect  <ack_to of each article>      -> ledger (Failure, when NER raises)

It runs at `extractor_nice` (10): NER yields the cores to the frontend, so POSTs stay fast
while extraction saturates the machine.
"""

from __future__ import annotations

import logging
import os
import time

import zmq

from common import metrics
from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import Article, Entity, Extraction, Failure, decode, encode
from common.sockets import LedgerReplies, open_socket
from services.extractor.ner import EntityExtractor, load_model

log = logging.getLogger("extractor")

SEND_TIMEOUT_MS = 1000


def run(settings: Settings, stop: StopFlag) -> None:
    os.nice(settings.extractor_nice)
    extractor = EntityExtractor(load_model(settings.model), settings.skip_labels)

    context = zmq.Context()
    inbox = open_socket(context, zmq.PULL, settings.dispatch_endpoint, bind=False)
    outbox = open_socket(context, zmq.PUSH, settings.results_in_endpoint, bind=False)
    outbox.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    replies = LedgerReplies(context)
    counters = {"extracted": 0, "failed": 0, "batches": 0}
    control = ControlLink(settings, "extractor", lambda: dict(counters)).start()
    log.info("extractor up", extra={"model": settings.model})
    try:
        while not stop:
            # Articles: take what is queued, up to one batch, then run NER on it.
            batch = _receive_batch(inbox, settings.batch_size)
            if not batch:
                continue
            started = time.perf_counter()
            counters["batches"] += 1
            for article, entities in zip(batch, _extract(extractor, batch), strict=True):
                if isinstance(entities, str):
                    # The ledger retries it later, or sets it aside as a dead letter.
                    counters["failed"] += 1
                    metrics.EXTRACTION_FAILURES.inc()
                    replies.send(article.ack_to, encode(Failure(article.id, entities)))
                    continue
                counters["extracted"] += 1
                metrics.EXTRACTED.inc()
                result = Extraction(article.id, article.publication, entities, article.ack_to)
                _send(outbox, encode(result), stop)
            seconds = time.perf_counter() - started
            metrics.BATCH_SECONDS.observe(seconds)
            log.info("batch extracted", extra={"articles": len(batch), "seconds": seconds})
    finally:
        control.stop()
        replies.close()
        inbox.close()
        outbox.close()
        context.term()
        log.info("extractor stopped")


def _receive_batch(inbox: zmq.Socket, size: int) -> list[Article]:
    if not inbox.poll(1000):
        return []
    batch: list[Article] = []
    while len(batch) < size:
        try:
            frame = inbox.recv(zmq.NOBLOCK)
        except zmq.Again:
            break
        message = decode(frame)
        if isinstance(message, Article):
            batch.append(message)
    return batch


def _extract(extractor: EntityExtractor, batch: list[Article]) -> list[list[Entity] | str]:
    """Entities of each article, or the error (a string) for an article that failed."""
    try:
        return list(extractor.extract([a.content for a in batch]))
    except Exception:
        # One bad article must not sink its batch: retry one by one.
        log.exception("batch failed; extracting one by one", extra={"articles": len(batch)})
    results: list[list[Entity] | str] = []
    for article in batch:
        try:
            results.append(extractor.extract([article.content])[0])
        except Exception as exc:
            log.exception("extraction failed", extra={"article_ids": [article.id]})
            results.append(f"{type(exc).__name__}: {exc}"[:1000])
    return results


def _send(outbox: zmq.Socket, frame: bytes, stop: StopFlag) -> None:
    # Block while the saver inlet is away (backpressure), but not past a stop request:
    # an unsent result is simply sent again by the ledger later.
    while True:
        try:
            outbox.send(frame)
            return
        except zmq.Again:
            if stop:
                return


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "extractor")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
