"""The extractor's memory and time on one 1 MiB article, against a normal batch.

    .venv/bin/python -m bench.long_article

In one process, with the extractor's own setup (services/extractor/ner.py: NER only, the
default `max_piece_chars`, nlp.pipe calls of at most PIPE_PIECES pieces' worth of
characters, each in a memory zone), it times `EntityExtractor.extract` on:

1. a normal batch: 64 Lee corpus articles (~1,200 characters each), as the extractor pulls
   them by default (`batch_size`);
2. one article of 1 MiB (1,048,576 characters: distinct Lee articles cycled, joined by
   blank lines), over spaCy's max_length, so extracted in pieces;
3. for comparison, what the character budget prevents: the same pieces in ONE nlp.pipe call
   (skip with --no-unbounded).

--piece-chars and --pipe-pieces try other piece sizes and budgets (pieces per call).

A thread samples the process's RSS every 5 ms (psutil) and reports each step's peak; the
steps run smallest first, since memory freed by Python is not always returned to the OS.
CPU seconds (this process, all threads) are steadier than wall seconds on a shared machine.
The process's own peak (getrusage ru_maxrss) closes the report. Prints Markdown.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import threading
import time
from collections.abc import Callable

import psutil

from common.config import DEFAULT_SKIP_LABELS, Settings
from loader.corpora import lee_articles
from services.extractor.ner import PIPE_PIECES, EntityExtractor, load_model, split_text

MIB = 1 << 20


class PeakRss:
    """The highest RSS of this process seen since the last reset, sampled every 5 ms."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._process.memory_info().rss)
            self._stop.wait(0.005)

    def reset(self) -> int:
        """The current RSS, which becomes the peak to beat."""
        self._peak = self._process.memory_info().rss
        return self._peak

    @property
    def peak(self) -> int:
        return max(self._peak, self._process.memory_info().rss)


def long_text(articles: list[str], chars: int) -> str:
    parts: list[str] = []
    size = 0
    for article in itertools.cycle(articles):
        parts.append(article)
        size += len(article) + 2
        if size >= chars:
            break
    return "\n\n".join(parts)[:chars]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=MIB, help="size of the long article")
    parser.add_argument("--no-unbounded", action="store_true", help="skip step 3")
    parser.add_argument("--piece-chars", type=int, help="default: the settings' max_piece_chars")
    parser.add_argument("--pipe-pieces", type=int, default=PIPE_PIECES, help="pieces per call")
    args = parser.parse_args()

    settings = Settings()
    started = time.perf_counter()
    nlp = load_model(settings.model)
    piece_chars = args.piece_chars or settings.max_piece_chars
    extractor = EntityExtractor(
        nlp, DEFAULT_SKIP_LABELS, piece_chars, pipe_chars=piece_chars * args.pipe_pieces
    )
    corpus = list(dict.fromkeys(lee_articles()))
    batch = corpus[: settings.batch_size]
    text = long_text(corpus, args.chars)
    pieces = split_text(text, piece_chars)
    extractor.extract(corpus[-20:])  # warm up: first-call allocations are not the batch's
    loaded = time.perf_counter() - started

    def unbounded() -> object:
        with nlp.memory_zone():
            return sum(len(doc.ents) for doc in nlp.pipe(pieces, batch_size=len(pieces)))

    steps: list[tuple[str, int, Callable[[], object]]] = [
        (
            f"normal batch ({len(batch)} articles)",
            sum(map(len, batch)),
            lambda: extractor.extract(batch),
        ),
        ("one 1 MiB article, in pieces", len(text), lambda: extractor.extract([text])),
    ]
    if not args.no_unbounded:
        steps.append(("same pieces, one nlp.pipe call", len(text), unbounded))

    print(
        f"machine: {os.cpu_count()} cores; model {settings.model}, "
        f"loaded and warm in {loaded:.1f} s"
    )
    print(
        f"max_piece_chars {piece_chars:,}; nlp.pipe budget "
        f"{extractor.pipe_chars:,} characters; the long article: "
        f"{len(text):,} characters in {len(pieces)} pieces\n"
    )
    print("| step | characters | seconds | CPU seconds | RSS before (MB) | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    with PeakRss() as rss:
        for name, chars, step in steps:
            before = rss.reset()
            step_started, cpu_started = time.perf_counter(), time.process_time()
            step()
            seconds = time.perf_counter() - step_started
            cpu = time.process_time() - cpu_started
            print(
                f"| {name} | {chars:,} | {seconds:.1f} | {cpu:.1f} | "
                f"{before / MIB:.0f} | {rss.peak / MIB:.0f} |"
            )
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\nprocess peak (ru_maxrss): {maxrss:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
