"""The mesh on one host vs the same processes spread over namespace hosts, in one run.

    sudo .venv/bin/python -m bench.multihost --articles 1000 --rounds 2

Same machine, same process counts, same store, same articles (the Lee corpus cycled,
distinct ids), each run as a ratio to the NER ceiling measured in the same round:

1. ceiling: spaCy NER-only `nlp.pipe` in 2 processes (bench/ceiling.py);
2. one host: one circusd, every link on its default private ipc socket, no CURVE;
3. namespace hosts: front1 (frontend + ledger), work1 and work2 (one extractor each), store1
   (control, saver inlet, saver), each a Linux network namespace on a bridge with its own
   circusd (`ingest up --topology FILE --host NAME`), every link CURVE tcp across a veth.
   Built and torn down by the fleet test's own code (tests/e2e/multihost/conftest.py).

Both meshes: 1 frontend process + its ledger, 2 extractors, 1 saver inlet, 1 saver,
control; the extractors' text cache off (the corpus repeats its 300 texts, and the ceiling
extracts every article); SQLite store on the saver's host (store1 in the namespaces),
checked through its article markers rather than read through the frontend (front1's own
store holds nothing).
Each is fresh per round, warmed up (the whole path once), then timed from the first POST
(load tool, 4 threads, batches of 100, from the root namespace) until every ledger's
journal is drained. Rounds interleave (ceiling, one host, namespaces) so the machine's
drift hits all three alike.

The namespaces share this machine's cores: this measures what the network path (veth,
bridge, TCP) and CURVE cost, not scaling. Needs root (network namespaces).
Prints Markdown (bench/RESULTS.md keeps the runs); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import spacy

from bench.ceiling import MODEL, ceiling
from bench.mesh_bench import WARM_UP_ARTICLES, articles, log
from bench.mesh_bench import post as post_articles
from bench.mesh_bench import wait_for_extractors as wait_for_local_extractors
from common.config import Settings
from loader.cli import wait_drained
from loader.corpora import lee_articles
from loader.report import LoadResult
from services.control import mesh
from store import open_store
from tests.e2e.conftest import start_mesh, stop_mesh
from tests.e2e.multihost.conftest import API_KEY, Hosts, namespace_fleet, namespace_skip_reason

EXTRACTORS = 2
# The Lee corpus cycled repeats each text: with the extractors' text cache on (a cache per
# extractor host), most articles would skip NER, and the two layouts would differ in how
# many (one cache on one host, one per worker host). Off in both: every article is
# extracted, as the ceiling extracts every one.
NO_TEXT_CACHE = {"text_cache_entries": 0}
HOSTS: Hosts = {
    "front1": (11, "frontend = 1"),
    "work1": (21, "extractors = 1"),
    "work2": (22, "extractors = 1"),
    "store1": (31, "control = true\nsaver_inlet = true\nsavers = 1"),
}


@dataclass
class Target:
    """Where a run posts, and the settings that watch its drain and read its store."""

    url: str
    key: str
    settings: Settings


@dataclass
class Run:
    rate: float  # articles/s, first POST to drained
    counted: int  # of the timed articles, how many the store has markers for
    cache_hits: int  # articles the extractors took from their text cache (must be 0)
    start_seconds: float  # from nothing to every process reporting (not timed in `rate`)


def post(target: Target, texts: Sequence[str], count: int, tag: str) -> LoadResult:
    result = post_articles(target, articles(texts, count, tag), tag, count)
    wait_drained(target.settings, result, max(600.0, count / 2), log)
    if not result.drained or result.accepted != count:
        raise RuntimeError(f"{tag}: {result.accepted} of {count} accepted; {result.error}")
    return result


def timed(target: Target, texts: Sequence[str], count: int, tag: str, started: float) -> Run:
    """Warm-up, then `count` articles timed from the first POST until drained."""
    start_seconds = time.monotonic() - started
    post(target, texts, WARM_UP_ARTICLES, f"{tag}-warm")
    result = post(target, texts, count, tag)
    seconds = result.end_to_end_seconds
    assert seconds is not None  # post() raised otherwise
    store = open_store(target.settings)
    try:
        counted = len(store.counted([f"{tag}-{i}" for i in range(count)]))
    finally:
        store.close()
    reports = mesh.control(target.settings, "status").reports
    hits = sum(int(r.counters.get("cache_hits", 0)) for r in reports if r.stage == "extractor")
    return Run(count / seconds, counted, hits, start_seconds)


def one_host(texts: Sequence[str], count: int, tag: str) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-onehost-") as tmp:
        log.print(f"[bold]{tag}[/]: one host, ipc links")
        started = time.monotonic()
        running = start_mesh(
            Path(tmp),
            extractors=EXTRACTORS,
            savers=1,
            web_workers=1,
            store="sqlite",
            **NO_TEXT_CACHE,
        )
        try:
            wait_for_local_extractors(running.settings, EXTRACTORS)
            target = Target(running.url, running.key, running.settings)
            return timed(target, texts, count, tag, started)
        finally:
            stop_mesh(running)


def namespaces(texts: Sequence[str], count: int, tag: str) -> Run:
    log.print(f"[bold]{tag}[/]: {len(HOSTS)} namespace hosts, CURVE tcp links")
    started = time.monotonic()
    # Default settings on every host (no short leases: nothing is killed here).
    host_settings = {f"INGEST_{name.upper()}": str(v) for name, v in NO_TEXT_CACHE.items()}
    with namespace_fleet(HOSTS, firestore=False, host_settings=host_settings) as fleet:
        target = Target(fleet.url("front1"), API_KEY, fleet.tester())
        return timed(target, texts, count, tag, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    reason = namespace_skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2

    load_before = os.getloadavg()
    corpus = lee_articles()
    texts = [corpus[i % len(corpus)] for i in range(args.articles)]
    rows = []
    for n in range(1, args.rounds + 1):
        log.print(f"round {n}: ceiling, NER-only nlp.pipe on {args.articles} articles")
        top = args.articles / ceiling(texts, EXTRACTORS)
        local = one_host(corpus, args.articles, f"r{n}-onehost")
        spread = namespaces(corpus, args.articles, f"r{n}-netns")
        rows.append((n, top, local, spread))

    load_after = os.getloadavg()
    lines = [
        f"### The mesh on one host vs {len(HOSTS)} namespace hosts: "
        f"{args.articles} articles, {args.rounds} rounds",
        "",
        f"`sudo .venv/bin/python -m bench.multihost --articles {args.articles} "
        f"--rounds {args.rounds}`; {psutil.cpu_count()} cores, Python "
        f"{platform.python_version()}, spaCy {spacy.__version__}, {MODEL}; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after.",
        "",
        "Both: 1 frontend process + ledger, 2 extractors, 1 saver inlet, 1 saver, control; "
        "text cache off; SQLite store on the saver's host (store1 in the namespaces), "
        "counted by its markers. "
        "One host: ipc links, no CURVE. Namespaces: front1 | work1, work2 | store1, each its "
        "own circusd, every link CURVE tcp over veths on a bridge. **The namespaces share "
        "the same cores: this measures the network path and CURVE, not scaling.**",
        "",
        "| round | ceiling art/s | one host art/s | one host / ceiling | namespaces art/s "
        "| namespaces / ceiling | namespaces / one host | start s (one host, namespaces) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, top, local, spread in rows:
        lines.append(
            f"| {n} | {top:.1f} | {local.rate:.1f} | {local.rate / top:.3f} | "
            f"{spread.rate:.1f} | {spread.rate / top:.3f} | {spread.rate / local.rate:.3f} | "
            f"{local.start_seconds:.0f}, {spread.start_seconds:.0f} |"
        )
    if rows:
        lines += [
            "",
            f"Median ratio to the ceiling: one host "
            f"{statistics.median(r[2].rate / r[1] for r in rows):.3f}, namespaces "
            f"{statistics.median(r[3].rate / r[1] for r in rows):.3f}; namespaces / one host "
            f"{statistics.median(r[3].rate / r[2].rate for r in rows):.3f}.",
        ]
    short = [
        f"WARNING: round {n}, {label}: {run.counted} of {args.articles} articles counted"
        for n, _, local, spread in rows
        for label, run in (("one host", local), ("namespaces", spread))
        if run.counted != args.articles
    ]
    short += [
        f"WARNING: round {n}, {label}: {run.cache_hits} articles skipped NER (text cache)"
        for n, _, local, spread in rows
        for label, run in (("one host", local), ("namespaces", spread))
        if run.cache_hits
    ]
    print("\n".join(lines + (["", *short] if short else [])))
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
