"""Soak: does an extractor's memory stay flat over a long run?

    .venv/bin/python -m bench.soak --articles 20000

Starts a mesh (SQLite store, 2 extractors) on free ports in a temporary folder, posts the
Lee corpus cycled to --articles with distinct ids (4 threads, batches of 100, paced by the
journal's backpressure), and samples the RSS of every extractor every 10 s until the mesh
has drained. A long-running spaCy process grows with every new string it meets unless its
batches run inside `nlp.memory_zone()` (services/extractor/ner.py); this shows whether ours
do. Prints Markdown; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.mesh_bench import articles, post, wait_for_extractors
from loader.corpora import lee_articles
from services.control import mesh
from tests.e2e.conftest import start_mesh, stop_mesh

SAMPLE_SECONDS = 10.0


def extractor_rss(settings) -> dict[int, float]:
    rss = {}
    for pid in mesh.circus(settings, "list", name="extractor")["pids"]:
        with contextlib.suppress(psutil.NoSuchProcess):
            rss[pid] = psutil.Process(pid).memory_info().rss / 2**20
    return rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=20_000)
    args = parser.parse_args()
    corpus = lee_articles()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        # The corpus is cycled: the text cache off, so every article runs through NER.
        running = start_mesh(Path(tmp), extractors=2, text_cache_entries=0)
        try:
            wait_for_extractors(running.settings, 2)
            posting = threading.Thread(
                target=post,
                args=(running, articles(corpus, args.articles, "soak"), "soak", args.articles),
            )
            started = time.monotonic()
            posting.start()
            samples: list[tuple[float, int, dict[int, float]]] = []
            while posting.is_alive() or running.backlog():
                done = int(running.http.get("/status").json()["committed"])
                samples.append((time.monotonic() - started, done, extractor_rss(running.settings)))
                time.sleep(SAMPLE_SECONDS)
            posting.join()
            samples.append(
                (time.monotonic() - started, args.articles, extractor_rss(running.settings))
            )
        finally:
            stop_mesh(running)
    pids = sorted(samples[0][2])
    print(f"### Soak: {args.articles} articles, 2 extractors\n")
    print(f"`python -m bench.soak --articles {args.articles}`\n")
    print("| s | committed | " + " | ".join(f"extractor {p} RSS MB" for p in pids) + " |")
    print("|---:|---:|" + "---:|" * len(pids))
    step = max(1, len(samples) // 15)
    for t, done, rss in [*samples[::step], samples[-1]]:
        print(f"| {t:.0f} | {done} | " + " | ".join(f"{rss.get(p, 0):.0f}" for p in pids) + " |")
    print()
    for pid in pids:
        series = [rss[pid] for _, done, rss in samples if pid in rss and done >= 1000]
        if series:
            print(
                f"extractor {pid}: {series[0]:.0f} MB after the first 1,000 articles, "
                f"{series[-1]:.0f} MB at the end, max {max(series):.0f} MB "
                f"(growth {series[-1] - series[0]:+.0f} MB)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
