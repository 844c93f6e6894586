"""The whole mesh against its ceiling, in one run.

    .venv/bin/python -m bench.mesh_bench --articles 3000 --extractors 2

Measures, on the same articles (the Lee corpus cycled to --articles, distinct ids):

1. ceiling: spaCy NER-only `nlp.pipe` (batch 64) in as many processes as the mesh has
   extractors, each with its model loaded beforehand and its share of the articles, sending
   nothing back: what the extraction alone does on this machine, with no HTTP, journal,
   ZeroMQ or store (`nlp.pipe(n_process=N)` is not used: it ships every Doc back to the
   parent, a third busy process on two cores, and measured below the mesh);
2. the mesh on the embedded SQLite store, end to end: a fresh mesh on free ports in a
   temporary folder, warmed up, then every article posted with the load tool's Python API
   (batched POSTs, 4 threads), timed from the first POST until the journal is drained;
3. the same on the Firestore emulator store (skipped with the reason if the emulator cannot
   start, or with --skip-firestore);
4. context: the full spaCy pipeline, `nlp(text)` one article at a time in one process.

Also: POST latency during (2) and (3), the RSS of every mesh process after (2), and the
intake alone with the extractors stopped (`circus stop extractor`): batched POSTs, and
single-article POSTs from 4 threads for a few seconds.

Prints Markdown to stdout (paste it into bench/RESULTS.md); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import psutil
import spacy
from rich.console import Console

from bench.ceiling import MODEL, ceiling, full_pipeline
from common.config import Settings
from loader.cli import run_load, wait_drained
from loader.corpora import LEE_PUBLICATIONS, lee_articles
from loader.poster import LoadOptions
from loader.readers import Article
from loader.report import LoadResult, add_task, make_progress
from services.control import mesh
from store.emulator import EmulatorFailed, EmulatorUnavailable, FirestoreEmulator, gcloud_path
from tests.e2e.conftest import RunningMesh, start_mesh, stop_mesh

CONCURRENCY, BATCH = 4, 100  # the load tool's defaults
WARM_UP_ARTICLES = 64
CONTEXT_SAMPLE = 100
SINGLE_POST_SECONDS = 5.0
PROBE_SECONDS, PROBE_RATE = 10.0, 20.0
SATURATING = 1200  # articles: ~15 s of NER for two extractors, longer than the probe

log = Console(stderr=True)


def articles(texts: Sequence[str], count: int | None, tag: str) -> Iterator[Article]:
    """`count` articles (None: endless) cycling over the corpus, each with its own id."""
    numbers = range(count) if count is not None else itertools.count()
    for i in numbers:
        pub = LEE_PUBLICATIONS[i % len(LEE_PUBLICATIONS)]
        yield Article(pub, texts[i % len(texts)], f"{tag}-{i}")


# --- The mesh ----------------------------------------------------------------------------


@dataclass
class MeshRun:
    label: str
    load: LoadResult
    stored: int
    rss: list[tuple[str, int, int]] = field(default_factory=list)  # (role, pid, bytes)
    intake: LoadResult | None = None
    single: LoadResult | None = None
    saturated_ms: list[float] = field(default_factory=list)  # 1-article POSTs during NER
    wrk: str = ""  # single-article POSTs from wrk (a C client), if installed


def wait_for_extractors(settings: Settings, count: int, timeout: float = 180.0) -> None:
    """An extractor reports only once its model is loaded: wait for all of them, or the
    first articles would all go to the first one up and the clock would include loading."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reports = mesh.control(settings, "status").reports
        if sum(1 for r in reports if r.stage == "extractor") >= count:
            return
        time.sleep(0.5)
    raise mesh.MeshError(f"fewer than {count} extractors reported within {timeout:.0f} s")


class MeshTarget(Protocol):
    """What posting needs of a mesh: a RunningMesh, or bench/multihost.py's fleet."""

    url: str
    key: str
    settings: Settings


def post(
    running: MeshTarget,
    rows: Iterator[Article],
    label: str,
    total: int | None,
    *,
    batch_size: int = BATCH,
    duration: float | None = None,
) -> LoadResult:
    progress = make_progress(log)
    options = LoadOptions(
        url=running.url,
        api_key=running.key,
        concurrency=CONCURRENCY,
        batch_size=batch_size,
        max_body_bytes=running.settings.max_body_bytes,
        duration=duration,
    )
    return run_load(rows, options, progress=progress, task=add_task(progress, label, total))


def drained(running: RunningMesh, result: LoadResult, timeout: float) -> LoadResult:
    wait_drained(running.settings, result, timeout, log)
    if not result.drained:
        raise mesh.MeshError(f"not drained: {result.error}")
    return result


def stored_articles(running: RunningMesh) -> int:
    body = running.http.get("/publications", params={"limit": 1000}).json()
    return sum(p["articles"] for p in body["publications"])


def mesh_rss(running: RunningMesh) -> list[tuple[str, int, int]]:
    """(role, pid, RSS bytes) of circusd, every watcher's processes and their children."""
    found: list[tuple[str, int, int]] = []

    def add(role: str, process: psutil.Process) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.append((role, process.pid, process.memory_info().rss))

    add("circusd", psutil.Process(running.process.pid))
    for stage in mesh.STAGES:
        for pid in mesh.circus(running.settings, "list", name=stage)["pids"]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process = psutil.Process(pid)
                add(stage, process)
                for child in process.children(recursive=True):
                    add(f"{stage} worker" if stage == "frontend" else f"{stage} child", child)
    return found


def run_mesh(
    label: str,
    texts: Sequence[str],
    count: int,
    extractors: int,
    *,
    intake: bool,
    **overrides: object,
) -> MeshRun:
    drain_timeout = max(600.0, count / 2)
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        log.print(f"[bold]{label}[/]: starting a mesh with {extractors} extractors")
        # The corpus is cycled: with the text cache on, repeats would skip NER and the mesh
        # would not be compared with the ceiling of extracting every article.
        overrides.setdefault("text_cache_entries", 0)
        running = start_mesh(Path(tmp), extractors=extractors, **overrides)
        try:
            wait_for_extractors(running.settings, extractors)
            # Warm-up: the whole path (journal, ledger, extractors, savers, store) once.
            warm = articles(texts, WARM_UP_ARTICLES, "warm")
            drained(running, post(running, warm, "warm-up", WARM_UP_ARTICLES), drain_timeout)

            result = post(running, articles(texts, count, "bench"), label, count)
            drained(running, result, drain_timeout)
            stored = stored_articles(running) - WARM_UP_ARTICLES
            # Then, untimed: while the extractors saturate both cores, how long does a
            # POST take? (Kept out of the timed run, whose work it would add to.)
            backlog = post(running, articles(texts, SATURATING, "saturate"), "saturate", None)
            probe = latency_probe(running, texts, PROBE_SECONDS, PROBE_RATE)
            drained(running, backlog, drain_timeout)
            run = MeshRun(label, result, stored, saturated_ms=probe)
            run.rss = mesh_rss(running)
            if intake:
                # The frontend alone: no extraction competes for the cores. The ledger's
                # window fills and waits; nothing needs draining, the mesh is thrown away.
                log.print("intake alone: stopping the extractors")
                mesh.circus(running.settings, "stop", name="extractor", waiting=True)
                rows = articles(texts, count, "intake")
                run.intake = post(running, rows, "intake, batched", count)
                rows = articles(texts, None, "single")
                run.single = post(
                    running,
                    rows,
                    "intake, 1 per POST",
                    None,
                    batch_size=1,
                    duration=SINGLE_POST_SECONDS,
                )
                run.wrk = wrk_single_posts(running)
                mesh.circus(running.settings, "start", name="extractor", waiting=True)
            return run
        finally:
            stop_mesh(running)


def latency_probe(
    running: RunningMesh, texts: Sequence[str], seconds: float, rate: float
) -> list[float]:
    """Milliseconds of single-article POSTs sent at `rate`/s for `seconds`, one at a time."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {running.key}"}
    with httpx.Client(base_url=running.url, timeout=30.0) as client:
        end = time.monotonic() + seconds
        for n in itertools.count():
            if time.monotonic() >= end:
                break
            body = {"publication": "Probe", "content": texts[n % len(texts)], "id": f"probe-{n}"}
            started = time.perf_counter()
            answer = client.post("/articles", json=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 202, answer.text
            time.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
    return latencies


WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"publication": "Wrk", "content": "Angela Merkel met Emmanuel Macron in ' ..
    'Paris, talk ' .. counter .. '.", "id": "wrk-' .. counter .. '-' .. math.random(1e9) .. '"}'
  return wrk.format("POST", "/articles", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer KEY"}, body)
end
"""


def wrk_output(running: RunningMesh) -> str | None:
    """wrk's report of single-article POSTs (2 threads, 8 kept-alive connections, 5 s), or
    None when wrk is not installed. A C client: the Python load tool, with its GIL, is
    itself the bottleneck for tiny POSTs."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT.replace("KEY", running.key))
        script.flush()
        return subprocess.run(
            [wrk, "-t2", "-c8", "-d5s", "--latency", "-s", script.name, running.url + "/"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip


def wrk_single_posts(running: RunningMesh) -> str:
    """Requests/s and p99 of single-article POSTs from wrk, or why not."""
    output = wrk_output(running)
    if output is None:
        return "wrk not installed (apt-get install wrk)"
    rate = next(line.split()[-1] for line in output.splitlines() if "Requests/sec" in line)
    p99 = next(line.split()[-1] for line in output.splitlines() if line.strip().startswith("99%"))
    errors = [line.strip() for line in output.splitlines() if "Non-2xx" in line]
    return f"{float(rate):.0f} requests/s, p99 {p99}" + (f" ({errors[0]})" if errors else "")


def run_firestore(texts: Sequence[str], count: int, extractors: int, skip: bool) -> MeshRun | str:
    """The mesh on the Firestore emulator, or the reason it was skipped."""
    if skip:
        return "--skip-firestore"
    if gcloud_path() is None:
        return "gcloud is not installed, so the Firestore emulator cannot start"
    try:
        with FirestoreEmulator.start() as emulator:
            return run_mesh(
                "mesh, Firestore emulator",
                texts,
                count,
                extractors,
                intake=False,
                store="firestore",
                firestore_project=emulator.project,
                firestore_emulator_host=emulator.host,
                # Firestore sustains ~1 write/s per document: the setting the architecture
                # notes recommend for it.
                flush_seconds=1.0,
            )
    except (EmulatorUnavailable, EmulatorFailed) as exc:
        return f"the emulator did not start: {str(exc).splitlines()[0]}"


# --- Report ------------------------------------------------------------------------------


def ms(result: LoadResult, q: str) -> str:
    value = result.latency_ms()[q]
    return "-" if value is None else f"{value:.0f}"


def rate_row(name: str, count: int, seconds: float, ceiling_rate: float) -> str:
    rate = count / seconds
    return f"| {name} | {count} | {seconds:.1f} | {rate:.1f} | {rate / ceiling_rate:.2f} |"


def e2e_rate(run: MeshRun) -> float:
    seconds = run.load.end_to_end_seconds
    assert seconds is not None  # drained() raised otherwise
    return run.load.accepted / seconds


def mesh_row(name: str, run: MeshRun, ceiling_rate: float) -> str:
    seconds = run.load.end_to_end_seconds
    assert seconds is not None
    return rate_row(name, run.load.accepted, seconds, ceiling_rate)


def report(
    args: argparse.Namespace,
    ceiling_seconds: float,
    context_count: int,
    context_seconds: float,
    sqlite: MeshRun,
    firestore: MeshRun | str,
    load_before: tuple[float, float, float],
) -> str:
    ceiling_rate = args.articles / ceiling_seconds
    load_after = os.getloadavg()
    lines = [
        f"### Mesh benchmark: {args.articles} articles, {args.extractors} extractors",
        "",
        f"`python -m bench.mesh_bench --articles {args.articles} --extractors "
        f"{args.extractors}{' --skip-firestore' if args.skip_firestore else ''}`; "
        f"{psutil.cpu_count()} cores, Python {platform.python_version()}, "
        f"spaCy {spacy.__version__}, {MODEL}; Lee corpus cycled, distinct ids; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.",
        "",
        "| measure | articles | seconds | articles/s | vs (1) |",
        "|---|---:|---:|---:|---:|",
        rate_row(
            f"(1) ceiling: NER-only nlp.pipe, {args.extractors} processes, batch 64",
            args.articles,
            ceiling_seconds,
            ceiling_rate,
        ),
        mesh_row("(2) mesh, SQLite store: first POST to drained", sqlite, ceiling_rate),
    ]
    if isinstance(firestore, MeshRun):
        lines.append(
            mesh_row("(3) mesh, Firestore emulator: first POST to drained", firestore, ceiling_rate)
        )
    else:
        lines.append(f"| (3) mesh, Firestore emulator: skipped ({firestore}) | | | | |")
    lines += [
        rate_row(
            "(4) context: full pipeline nlp(text), one at a time, 1 process",
            context_count,
            context_seconds,
            ceiling_rate,
        ),
    ]
    ratios = [f"**(2)/(1) = {e2e_rate(sqlite) / ceiling_rate:.2f}**"]
    if isinstance(firestore, MeshRun):
        ratios.append(f"(3)/(1) = {e2e_rate(firestore) / ceiling_rate:.2f}")
    else:
        ratios.append(f"firestore: skipped ({firestore})")
    lines += ["", "; ".join(ratios)]
    lines += ["", "| run | posting s | POSTs | p50 ms | p95 ms | p99 ms | stored |"]
    lines += ["|---|---:|---:|---:|---:|---:|---:|"]
    for run in [sqlite, firestore]:
        if isinstance(run, MeshRun):
            lines.append(
                f"| {run.label} | {run.load.seconds:.1f} | {run.load.requests} | "
                f"{ms(run.load, 'p50')} | {ms(run.load, 'p95')} | {ms(run.load, 'p99')} | "
                f"{run.stored} |"
            )
    if sqlite.intake and sqlite.single:
        intake, single = sqlite.intake, sqlite.single
        lines += [
            "",
            "Intake alone (extractors stopped, SQLite journal `synchronous=FULL`, "
            f"{CONCURRENCY} threads):",
            "",
            "| POSTs | articles | seconds | articles/s | p50 ms | p99 ms |",
            "|---|---:|---:|---:|---:|---:|",
            f"| {BATCH} articles each | {intake.accepted} | {intake.seconds:.1f} | "
            f"{intake.articles_per_second:.0f} | {ms(intake, 'p50')} | {ms(intake, 'p99')} |",
            f"| 1 article each | {single.accepted} | {single.seconds:.1f} | "
            f"{single.articles_per_second:.0f} | {ms(single, 'p50')} | {ms(single, 'p99')} |",
        ]
    if sqlite.wrk:
        lines += [
            "",
            f"Single-article POSTs from wrk (C client, 2 threads, 8 connections): {sqlite.wrk}",
        ]
    for run in [sqlite, firestore]:
        if isinstance(run, MeshRun) and run.saturated_ms:
            probe = sorted(run.saturated_ms)
            p50, p99 = probe[len(probe) // 2], probe[min(len(probe) - 1, int(len(probe) * 0.99))]
            lines.append(
                f"\n{run.label}: single-article POST latency while the extractors saturate the "
                f"cores ({len(probe)} POSTs at {PROBE_RATE:.0f}/s): p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms, max {probe[-1]:.1f} ms"
            )
    lines += ["", f"RSS of the mesh processes after (2) ({args.articles} articles):", ""]
    lines += ["| process | pid | RSS MB |", "|---|---:|---:|"]
    for role, pid, rss in sqlite.rss:
        lines.append(f"| {role} | {pid} | {rss / 2**20:.0f} |")
    total = sum(rss for _, _, rss in sqlite.rss)
    lines.append(f"| **total** | | **{total / 2**20:.0f}** |")
    problems = [
        f"WARNING: {run.label} stored {run.stored} articles of {args.articles}"
        for run in (sqlite, firestore)
        if isinstance(run, MeshRun) and run.stored != args.articles
    ]
    return "\n".join(lines + (["", *problems] if problems else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=3000)
    parser.add_argument("--extractors", type=int, default=2)
    parser.add_argument("--skip-firestore", action="store_true")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()

    corpus = lee_articles()
    texts = [corpus[i % len(corpus)] for i in range(args.articles)]
    log.print(f"(1) ceiling: NER-only nlp.pipe on {args.articles} articles")
    ceiling_seconds = ceiling(texts, args.extractors)
    sample = corpus[: min(CONTEXT_SAMPLE, args.articles)]
    log.print(f"(4) context: full pipeline on {len(sample)} articles")
    context_seconds = full_pipeline(sample)

    sqlite = run_mesh(
        "mesh, SQLite", corpus, args.articles, args.extractors, intake=True, store="sqlite"
    )
    firestore = run_firestore(corpus, args.articles, args.extractors, args.skip_firestore)
    print(
        report(
            args,
            ceiling_seconds,
            len(sample),
            context_seconds,
            sqlite,
            firestore,
            load_before,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
