"""Freshness: from an article's 202 to its counts being readable, under an open-loop load.

    .venv/bin/python -m bench.freshness --seconds 40

Measures the NER ceiling of this machine first (bench/ceiling.py: 2 processes, NER only),
then starts the mesh on SQLite (default settings, 2 extractors) and posts single articles
at a fixed rate, on a clock (open loop: a slow answer does not slow the load), at 50% and
then 90% of that ceiling. Each article's freshness is its marker's `committed_at` (the
commit that made its counts readable, read back from the store) minus the time its 202
arrived; both are this machine's wall clock. Prints p50/p95/p99 per load, and what the
mesh's own metric (`ingest_freshness_seconds`, 202 to acknowledgement) says beside it.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.ceiling import ceiling
from loader.corpora import lee_articles
from tests.e2e.conftest import RunningMesh, start_mesh, stop_mesh

PUBLICATIONS = ["Freshness Daily", "Freshness Weekly", "Freshness Wire"]
BUCKET = re.compile(r'^ingest_freshness_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.M)


def open_loop(
    running: RunningMesh, texts: Sequence[str], rate: float, seconds: float, tag: str
) -> dict[str, float]:
    """POST one article every 1/rate s for `seconds`; returns id -> time its 202 arrived."""
    accepted: dict[str, float] = {}
    lock = threading.Lock()
    count = int(rate * seconds)
    started = time.monotonic()

    def post(n: int) -> None:
        body = {
            "id": f"{tag}-{n}",
            "publication": PUBLICATIONS[n % len(PUBLICATIONS)],
            "content": texts[n % len(texts)],
        }
        with httpx.Client(base_url=running.url, timeout=30) as client:
            response = client.post(
                "/articles", json=body, headers={"Authorization": f"Bearer {running.key}"}
            )
        if response.status_code == 202:
            with lock:
                accepted[body["id"]] = time.time()

    threads = []
    for n in range(count):
        # On the clock, whatever the answers do: a thread per request.
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=post, args=(n,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return accepted


def committed_at(running: RunningMesh, ids: list[str]) -> dict[str, float]:
    conn = sqlite3.connect(running.settings.sqlite_store_path)
    try:
        found: dict[str, float] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = conn.execute(
                f"SELECT id, committed_at FROM articles WHERE id IN ({marks})", part
            )
            found.update(rows)
        return found
    finally:
        conn.close()


def metric_quantile(text: str, q: float) -> str:
    """The upper bound of the histogram bucket holding quantile q (what Prometheus's
    histogram_quantile interpolates within)."""
    buckets = [(float(le), float(n)) for le, n in BUCKET.findall(text)]
    if not buckets or buckets[-1][1] == 0:
        return "-"
    total = buckets[-1][1]
    for le, n in buckets:
        if n >= q * total:
            return f"<= {le:g}"
    return "-"


def percentiles(values: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100)
    return cuts[49], cuts[94], cuts[98]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each load")
    args = parser.parse_args(argv)
    texts = lee_articles()
    ceiling_rate = len(texts) / ceiling(texts, 2)
    print(f"NER ceiling (2 processes): {ceiling_rate:.1f} articles/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # The corpus is cycled: the text cache off, so every article runs through NER.
        running = start_mesh(Path(tmp) / "mesh", extractors=2, text_cache_entries=0)
        try:
            running.wait_until_accepting()
            time.sleep(5)  # the extractors load their model
            for share in (0.5, 0.9):
                rate = share * ceiling_rate
                accepted = open_loop(running, texts, rate, args.seconds, f"f{int(share * 100)}")
                running.wait_drained(timeout=600)
                commits = committed_at(running, list(accepted))
                fresh = [commits[i] - t for i, t in accepted.items() if i in commits]
                after = httpx.get(running.url + "/metrics").text
                p50, p95, p99 = percentiles(fresh)
                rows.append((share, rate, len(accepted), p50, p95, p99, after))
        finally:
            stop_mesh(running)
    print()
    print(
        f"{'load':>6} {'articles/s':>10} {'articles':>9} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7}"
        f"  {'metric p99 (cumulative)':>24}"
    )
    for share, rate, n, p50, p95, p99, after in rows:
        print(
            f"{share:>6.0%} {rate:>10.1f} {n:>9} {p50:>7.2f} {p95:>7.2f} {p99:>7.2f}"
            f"  {metric_quantile(after, 0.99):>24}"
        )


if __name__ == "__main__":
    main()
