"""What the ledger's look at its journal backlog costs, by backlog size.

The ledger counts the journal's rows and the age of the oldest every lease scan (twice a
second), and reports them to control. Side by side in one run, on one journal of Lee
texts: the query it used until issue 15's third round (count and oldest in one SELECT)
and `Journal.backlog` as it is now (services/frontend/journal.py).

    .venv/bin/python -m bench.journal_backlog [--sizes 0,3000,30000,100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from loader.corpora import lee_articles
from services.frontend.journal import Entry, Journal

ONE_SELECT = "SELECT count(*), min(accepted_at) FROM journal"
CALLS = 20


def cpu_ms_per_call(call: Callable[[], object]) -> float:
    started = time.process_time()
    for _ in range(CALLS):
        call()
    return (time.process_time() - started) / CALLS * 1000


def grow(journal: Journal, texts: list[str], have: int, wanted: int) -> int:
    while have < wanted:
        step = min(1000, wanted - have)
        journal.append(
            [Entry(f"a{have + i}", "P", texts[(have + i) % len(texts)]) for i in range(step)]
        )
        have += step
    return have


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,3000,30000,100000")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    texts = list(lee_articles())
    with tempfile.TemporaryDirectory() as folder:
        journal = Journal(Path(folder) / "journal.sqlite3", synchronous="NORMAL")
        journal.set_gate("accepting", 1)
        connection = journal._conn  # the old query, on the very same file
        print("| rows waiting | one SELECT (before), ms | Journal.backlog (now), ms | ratio |")
        print("|---:|---:|---:|---:|")
        have = 0
        for size in sizes:
            have = grow(journal, texts, have, size)
            assert journal.backlog().articles == size
            before = cpu_ms_per_call(lambda: connection.execute(ONE_SELECT).fetchone())
            now = cpu_ms_per_call(journal.backlog)
            print(f"| {size:,} | {before:.3f} | {now:.3f} | {before / max(now, 1e-6):.0f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
