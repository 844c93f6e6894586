"""Extractor: asks for articles, runs spaCy NER on batches, PUSHes one result per article.

Pattern: a worker of the load-balancing pattern (ZeroMQ guide): it asks each ledger for its
next chunk when it has room (inbox.py), so work waits where any extractor can take it. It
binds nothing, so `circusctl incr extractor` adds a worker with no port or configuration
change.

    inbox    DEALER  connect  settings.ledger_dispatch_endpoints  <-> every ledger (one each)
    outbox   PUSH    connect  settings.results_in_endpoint  -> saver inlet ([route key, result])
    replies  PUSH    connect  settings.ledger_ack_endpoints  -> ledgers (Failure, when NER raises;
                                                               Released, what it stops holding)

It runs at `extractor_nice` (10): NER yields the cores to the frontend, so POSTs stay fast
while extraction saturates the machine. An article longer than `max_piece_chars` is
extracted in pieces and counted as one (ner.py).
"""

from __future__ import annotations

import logging
import os
import time

import msgspec
import zmq

from common import metrics
from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import (
    Acked,
    Article,
    Entity,
    Extraction,
    Failure,
    Released,
    encode,
    route_key,
)
from common.sockets import LedgerReplies, MeshSockets
from services.extractor.cache import TextCache
from services.extractor.inbox import Inbox
from services.extractor.ner import EntityExtractor, load_model

log = logging.getLogger("extractor")

SEND_TIMEOUT_MS = 1000
RECEIVE_TIMEOUT_MS = 1000  # how often an idle extractor looks at its stop flag
# Errors that another try may not meet: the machine ran short (memory, files, descriptors),
# not the text. Anything else an article raises on its own is its text's doing (_extract).
RETRYABLE_ERRORS = (MemoryError, OSError)


def run(settings: Settings, stop: StopFlag) -> None:
    os.nice(settings.extractor_nice)
    nlp = load_model(settings.model)
    if settings.max_piece_chars > nlp.max_length:
        # Allowed, but every piece over spaCy's limit fails (E088) and is dead-lettered.
        log.warning(
            "max_piece_chars is over spaCy's max_length: pieces over it will fail (E088)",
            extra={"max_piece_chars": settings.max_piece_chars, "max_length": nlp.max_length},
        )
    extractor = EntityExtractor(
        nlp,
        settings.skip_labels,
        settings.max_piece_chars,
        vocabulary_strings=settings.extractor_vocabulary_strings,
    )
    cache = open_cache(settings)

    sockets = MeshSockets(settings)
    # Asks every ledger for chunks of work: a ledger that is away only stops its own share
    # (its articles wait in its journal).
    inbox = Inbox(sockets, settings.ledger_dispatch_endpoints(), settings.batch_size)
    outbox = sockets.connect(zmq.PUSH, settings.results_in_endpoint)
    outbox.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
    replies = LedgerReplies(sockets, settings.ledger_ack_endpoints())
    counters = {"extracted": 0, "failed": 0, "batches": 0, "cache_hits": 0}
    control = ControlLink(settings, "extractor", lambda: dict(counters)).start()
    log.info("extractor up", extra={"model": settings.model})
    try:
        while not stop:
            # Articles: the chunks the ledgers answered with, then NER on them as one batch.
            batch = inbox.receive(RECEIVE_TIMEOUT_MS)
            if not batch:
                continue
            started = time.perf_counter()
            counters["batches"] += 1
            results, hits = _extract_once_per_text(extractor, cache, batch)
            counters["cache_hits"] += hits
            metrics.TEXT_CACHE_HITS.inc(hits)
            for article, entities in zip(batch, results, strict=True):
                if isinstance(entities, Failure):
                    # The ledger retries it later, or sets it aside as a dead letter.
                    counters["failed"] += 1
                    metrics.EXTRACTION_FAILURES.inc()
                    replies.send(article.ledger, encode(entities))
                    continue
                counters["extracted"] += 1
                metrics.EXTRACTED.inc()
                result = Extraction(
                    article.id, article.publication, entities, article.ledger, article.token
                )
                _send(outbox, [route_key(article.publication), encode(result)], stop)
            seconds = time.perf_counter() - started
            metrics.BATCH_SECONDS.observe(seconds)
            log.info("batch extracted", extra={"articles": len(batch), "seconds": seconds})
    finally:
        _give_back(replies, inbox.waiting())
        control.stop()
        sockets.close()
        if cache is not None:
            cache.close()
        log.info("extractor stopped")


def _give_back(replies: LedgerReplies, articles: list[Article]) -> None:
    """Tell each ledger which of its articles this stopping extractor received and will
    not extract (the chunk it asked for ahead), so they go out again now, not one lease
    later. Best effort: one not given back still comes back with its lease."""
    by_ledger: dict[str, list[Acked]] = {}
    for article in articles:
        by_ledger.setdefault(article.ledger, []).append(Acked(article.id, article.token))
    for ledger, released in by_ledger.items():
        replies.send(ledger, encode(Released(released)))
    if articles:
        log.info("gave back articles not extracted", extra={"articles": len(articles)})


def open_cache(settings: Settings) -> TextCache | None:
    """The host's cache of extracted texts (cache.py), or None when configured off."""
    if settings.text_cache_entries <= 0:
        return None
    configuration = [
        settings.model,
        ",".join(sorted(settings.skip_labels)),
        str(settings.max_piece_chars),
    ]
    return TextCache(settings.text_cache_path, settings.text_cache_entries, configuration)


def _extract_once_per_text(
    extractor: EntityExtractor, cache: TextCache | None, batch: list[Article]
) -> tuple[list[list[Entity] | Failure], int]:
    """The entities of each article, running NER once per distinct text that the host's
    cache does not hold; returns them and how many articles needed no NER run."""
    if cache is None:
        return _extract(extractor, batch), 0
    digests = [cache.digest(a.content) for a in batch]
    known = cache.get(list(dict.fromkeys(digests)))
    first: dict[bytes, Article] = {}  # one article per text to extract
    for article, digest in zip(batch, digests, strict=True):
        if digest not in known:
            first.setdefault(digest, article)
    extracted = dict(zip(first, _extract(extractor, list(first.values())), strict=True))
    cache.put({d: e for d, e in extracted.items() if not isinstance(e, Failure)})
    results: list[list[Entity] | Failure] = []
    for article, digest in zip(batch, digests, strict=True):
        found = known.get(digest) or extracted[digest]
        if isinstance(found, Failure):  # its text failed: so does every copy, with its id
            found = msgspec.structs.replace(found, id=article.id, token=article.token)
        results.append(found)
    return results, len(batch) - len(first)


def _extract(extractor: EntityExtractor, batch: list[Article]) -> list[list[Entity] | Failure]:
    """Entities of each article, or a Failure for an article that failed on its own.

    A batch that raises is retried one article at a time, so only the article that raises
    alone fails. Its Failure is retryable only for RETRYABLE_ERRORS (MemoryError, OSError):
    the process or the machine ran short, and another try, maybe in another extractor, may
    pass. Any other error (spaCy's are ValueError, KeyError...) came from this text in a
    process that handles other texts: the same text would raise the same way on every try,
    so the ledger dead-letters it at once rather than spending `max_attempts` dispatches
    and backoffs on it. Should a bug of the process's own state ever be mistaken for one,
    the article is a visible dead letter, and `ingest retry-dead` sends it again.
    """
    try:
        return list(extractor.extract([a.content for a in batch]))
    except Exception:
        # One bad article must not sink its batch: retry one by one.
        log.exception("batch failed; extracting one by one", extra={"articles": len(batch)})
    results: list[list[Entity] | Failure] = []
    for article in batch:
        try:
            results.append(extractor.extract([article.content])[0])
        except Exception as exc:
            retryable = isinstance(exc, RETRYABLE_ERRORS)
            log.exception(
                "extraction failed",
                extra={"article_ids": [article.id], "retryable": retryable},
            )
            error = f"{type(exc).__name__}: {exc}"[:1000]
            results.append(Failure(article.id, article.token, error, retryable=retryable))
    return results


def _send(outbox: zmq.Socket, frames: list[bytes], stop: StopFlag) -> None:
    # Block while the saver inlet is away (backpressure), but not past a stop request:
    # an unsent result is simply sent again by the ledger later.
    while True:
        try:
            outbox.send_multipart(frames)
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
