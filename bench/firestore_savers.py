"""Firestore with many savers: the mesh with 1, 2 and 4 savers, and one saver alone.

    .venv/bin/python -m bench.firestore_savers --articles 900

Side by side in one run, on this machine:

1. The mesh (2 extractors) on Google's Firestore emulator with 1, 2 and 4 savers, and the
   same load on SQLite: articles/s end to end, store commits/s, the hottest document's
   writes in its busiest 10 s (over all savers: counted by a gRPC proxy in front of the
   emulator, tests/firestore_faults.py, which forwards every call unchanged here), and
   the latency of the ranked read (GET /publications/{name}/entities?limit=20), p50/p99
   over 200 reads made while the mesh writes.
2. One saver alone against the emulator, before and after: results committed as they come
   in one commit per flush for every publication (the old way, which each saver did) vs one
   commit per publication at most once a second (services/saver/schedule.py as shipped).

Wall rates on these shared 2-core machines are noisy: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.saver_store import extract_corpus, replicate
from common.config import load_settings
from common.messages import Extraction
from loader.corpora import lee_articles
from services.saver.audit import DocumentWrites, documents_of
from services.saver.commits import commit
from services.saver.schedule import CommitSchedule
from store.emulator import FirestoreEmulator
from store.firestore import open_firestore_store
from tests.e2e.conftest import RunningMesh, start_mesh, stop_mesh
from tests.firestore_faults import ContentionProxy, most_writes_in_any_window

PUBLICATIONS = [f"Publication {i}" for i in range(6)]
READS = 200


@dataclass
class MeshResult:
    label: str
    articles: int
    seconds: float
    commits: int
    hottest: tuple[str, int]  # document, writes in its busiest 10 s
    reads_ms: list[float] = field(default_factory=list)


def post_all(running: RunningMesh, texts: Sequence[str], count: int, tag: str) -> None:
    rows = [
        {"publication": PUBLICATIONS[i % len(PUBLICATIONS)], "content": texts[i % len(texts)]}
        for i in range(count)
    ]
    for start in range(0, count, 100):
        batch = [dict(r, id=f"{tag}-{start + n}") for n, r in enumerate(rows[start : start + 100])]
        response = running.post(batch)
        if response.status_code != 202:
            raise RuntimeError(f"POST refused: {response.status_code} {response.text[:300]}")


def read_while_writing(running: RunningMesh, until: threading.Event) -> list[float]:
    """Latency of the ranked read, READS times spread over the run, in ms."""
    latencies: list[float] = []
    with httpx.Client(base_url=running.url, timeout=30) as client:
        n = 0
        while not until.is_set() or len(latencies) < READS:
            pub = PUBLICATIONS[n % len(PUBLICATIONS)]
            started = time.perf_counter()
            try:
                client.get(f"/publications/{pub}/entities", params={"limit": 20})
            except httpx.HTTPError:
                return latencies  # the mesh is stopping (the run failed)
            latencies.append((time.perf_counter() - started) * 1000)
            n += 1
            if len(latencies) >= READS and until.is_set():
                break
            until.wait(0.05)
    return latencies[:READS] if len(latencies) > READS else latencies


def commits_from_metrics(running: RunningMesh) -> int:
    text = running.http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("ingest_store_commit_seconds_count"):
            return int(float(line.split()[-1]))
    return 0


def hottest_from_metrics(running: RunningMesh) -> float:
    text = running.http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("ingest_store_hottest_document_writes_per_second "):
            return float(line.split()[-1])
    return 0.0


def run_mesh(label: str, tmp: Path, texts: Sequence[str], count: int, **settings) -> MeshResult:
    proxy: ContentionProxy | None = settings.pop("proxy", None)
    # The corpus is cycled: the text cache off, so every article runs through NER.
    running = start_mesh(
        tmp / label.replace(" ", "-"), extractors=2, text_cache_entries=0, **settings
    )
    try:
        running.wait_until_accepting()
        time.sleep(5)  # extractors load their model
        done = threading.Event()
        reads: list[float] = []
        reader = threading.Thread(target=lambda: reads.extend(read_while_writing(running, done)))
        first_commit = len(proxy.commits) if proxy else 0
        started = time.perf_counter()
        reader.start()
        post_all(running, texts, count, label.replace(" ", "-"))
        running.wait_drained(timeout=900)
        seconds = time.perf_counter() - started
        sqlite_hottest = hottest_from_metrics(running)
        done.set()
        reader.join()
        commits = commits_from_metrics(running)
        if proxy:
            hottest = most_writes_in_any_window(proxy.commits[first_commit:], 10.0)
        else:
            hottest = ("(saver metric, writes/s x 10)", round(sqlite_hottest * 10))
        return MeshResult(label, count, seconds, commits, hottest, reads)
    finally:
        stop_mesh(running)


@dataclass
class SaverAlone:
    label: str
    seconds: float
    articles: int
    commits: int
    hottest: float  # writes/s of the most written document over its window


def saver_alone(
    label: str, settings, results: list[Extraction], per_publication: bool
) -> SaverAlone:
    """Feed `results` to one saver's schedule and commit loop, as fast as it goes."""
    store = open_firestore_store(settings)
    schedule = CommitSchedule(
        per_publication=per_publication,
        min_interval=1.0 if per_publication else 0.0,
        gather_seconds=0.25,
        max_articles=256,
    )
    writes = DocumentWrites()
    tally = SaverAlone(label, 0.0, len(results), 0, 0.0)

    def commit_due() -> bool:
        """Commit one due group, as the saver does; False if none is due."""
        due = schedule.next_due()
        if due is None:
            return False
        group, batch = due
        outcome = commit(store, batch)
        schedule.committed(group, outcome.settled)
        writes.record(documents_of(outcome.committed))
        tally.hottest = max(tally.hottest, writes.hottest()[1])
        tally.commits += 1
        return True

    started = time.perf_counter()
    # Results arrive at a steady 1,000/s at most, in the order the inlet would deliver them.
    for n, result in enumerate(results):
        schedule.add(result)
        if n % 100 == 99:
            while commit_due():
                pass
            time.sleep(0.1)
    while schedule.waiting():
        if not commit_due():
            time.sleep(0.01)
    tally.seconds = time.perf_counter() - started
    store.close()
    return tally


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else float("nan")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=900, help="articles per mesh run")
    parser.add_argument("--alone", type=int, default=3000, help="articles for the saver alone")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores; {args.articles} articles per mesh run")
    texts = lee_articles()
    mesh_results: list[MeshResult] = []
    with FirestoreEmulator.start() as emulator, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        proxy = ContentionProxy(emulator.host).start()
        try:
            mesh_results.append(run_mesh("sqlite 1 saver", tmp, texts, args.articles, savers=1))
            for savers in (1, 2, 4):
                emulator.reset()
                mesh_results.append(
                    run_mesh(
                        f"firestore {savers} saver{'s' if savers > 1 else ''}",
                        tmp,
                        texts,
                        args.articles,
                        savers=savers,
                        store="firestore",
                        firestore_project=emulator.project,
                        firestore_emulator_host=proxy.host,
                        proxy=proxy,
                    )
                )
        finally:
            proxy.stop()

        print()
        print(
            f"{'mesh':<20} {'articles/s':>10} {'commits/s':>10} {'hottest doc, busiest 10 s':>26}"
            f" {'read p50 ms':>12} {'read p99 ms':>12}"
        )
        for r in mesh_results:
            print(
                f"{r.label:<20} {r.articles / r.seconds:>10.1f} {r.commits / r.seconds:>10.1f}"
                f" {r.hottest[1]:>17} writes {percentile(r.reads_ms, 50):>12.1f}"
                f" {percentile(r.reads_ms, 99):>12.1f}"
            )
        print("hottest documents:", {r.label: r.hottest[0] for r in mesh_results})

        per_text = extract_corpus()
        results = replicate(per_text, args.alone, len(PUBLICATIONS))
        settings = load_settings(
            {},
            store="firestore",
            firestore_project=emulator.project,
            firestore_emulator_host=emulator.host,
        )
        alone = []
        for label, per_publication in (("before: one commit/flush", False), ("after: paced", True)):
            emulator.reset()
            alone.append(saver_alone(label, settings, results, per_publication))
    print()
    print(f"{'saver alone':<26} {'articles/s':>10} {'commits/s':>10} {'hottest writes/s':>17}")
    for a in alone:
        print(
            f"{a.label:<26} {a.articles / a.seconds:>10.1f} {a.commits / a.seconds:>10.1f}"
            f" {a.hottest:>17.2f}"
        )
    print(
        f"after/before articles/s: {alone[1].seconds and alone[0].seconds / alone[1].seconds:.2f}"
    )


if __name__ == "__main__":
    main()
