"""Interleaved rounds on one long-running mesh, CPU per article of every process, cold start
and footprint (issue 15, targets 1 and 4), in one run.

    .venv/bin/python -m bench.rounds --rounds 5 --articles 1500 [--soak 20000] \
        [--store {sqlite,firestore}]

1. Cold start: `ingest up --foreground` (what `make run` runs, kept as this benchmark's
   child so it can always stop it) in a temporary data folder with a free HTTP port, timed
   from the command's start to the first 202 of a POST retried until one is accepted, and
   to that article's counts being readable (GET /publications). Then, the mesh idle (both
   extractors loaded, the first article counted): the RSS of every process (every
   descendant of circusd, its stage read from its command line) and the CPU seconds all of
   them take over 10 s with nothing to do.
2. Rounds, on that same mesh, never restarted: bench/ceiling.py's NER-only ceiling (as many
   processes as the mesh has extractors) on --articles Lee texts, then the mesh on the same
   texts as articles with distinct ids, posted with the load tool (bench/mesh_bench.py's
   post()), timed from the first POST to the store commit of the round's last article (the
   markers' `committed_at`; exact, where polling the drain would add up to ~1 s), for
   --rounds rounds. For every round: both rates and their ratio, and CPU seconds per article
   of every mesh process (psutil, user + system, before/after the round), by stage, against
   the ceiling workers' own CPU. The corpus has 300 texts, cycled: the mesh runs with
   `text_cache_entries = 0`, or its cache of extracted texts (services/extractor/cache.py)
   would serve the repeats without NER and falsify the comparison.
3. Footprint: the RSS of every process again after the rounds, and after --soak more
   articles when asked, beside the idle figures, so growth over a long run shows.

--store firestore runs the same on the Firestore store, against Google's emulator
(`gcloud emulators firestore start`, store/emulator.py), started by this benchmark before the
mesh and outside it (not as the mesh's Circus watcher), so that its JVM, a stand-in for a
managed service, is not counted as the mesh's CPU: the mesh's figures stay comparable with
SQLite's. The emulator's own CPU per article is reported beside them, as context. Commit
times are then the markers' `committed_at` in Firestore (the server's request time). No
emulator (no gcloud, or it does not start): the benchmark stops with an error, it does not
fall back to SQLite.

Wall time on a shared 2-core machine is noisy, CPU time much less: the summary gives both.
Prints Markdown tables on stdout (paste into bench/RESULTS.md); progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import spacy

from bench.ceiling import MODEL, ceiling_with_cpu
from bench.freshness import committed_at
from bench.mesh_bench import (
    WARM_UP_ARTICLES,
    articles,
    drained,
    log,
    post,
    wait_for_extractors,
)
from common.config import Settings
from loader.corpora import lee_articles
from loader.report import LoadResult
from store.emulator import EmulatorFailed, EmulatorUnavailable, FirestoreEmulator
from tests.e2e.conftest import RunningMesh, isolated_settings, stop_mesh

STORES = ("sqlite", "firestore")
IDLE_SECONDS = 10.0
SETTLE_SECONDS = 3.0  # after the first article: let the last commits and reports pass
COLD_TIMEOUT = 300.0
# The stages CPU is grouped by, in the order printed; anything else is "other (...)".
STAGE_ORDER = (
    "frontend",
    "ledger",
    "extractor",
    "saver-inlet",
    "saver",
    "control",
    "circusd",
)
MODULES = {
    "gunicorn": "frontend",
    "services.control": "control",
    "services.frontend.ledger": "ledger",
    "services.extractor": "extractor",
    "services.saver_inlet": "saver-inlet",
    "services.saver": "saver",
}


# --- The mesh's processes ----------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    stage: str
    role: str  # the stage, or which process of it (a frontend is a gunicorn master + worker)
    cpu: float  # user + system seconds since the process started
    rss: int  # bytes
    wakeups: int = 0  # voluntary context switches of all its threads: how often it slept


def wakeups_of(pid: int) -> int:
    """Voluntary context switches summed over the process's threads (psutil reads the main
    thread's only): each is the thread going to sleep, so each wake-up counts once."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            status = (task / "status").read_text()
            total += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    return total


def stage_of(cmdline: Sequence[str]) -> str:
    """The stage a process runs, from its command line as circus.ini starts it."""
    if not cmdline:
        return "other (no command line)"
    if any(Path(part).name == "circusd" for part in cmdline[:2]):
        return "circusd"
    if cmdline[0].startswith("gunicorn"):  # a worker renamed by setproctitle
        return "frontend"
    if "-m" in cmdline[:-1]:
        module = cmdline[cmdline.index("-m") + 1]
        return MODULES.get(module, f"other ({module})")
    return f"other ({Path(cmdline[0]).name})"


def find_circusd(cli: subprocess.Popen) -> psutil.Process:
    """circusd: the child `ingest up --foreground` started."""
    for child in psutil.Process(cli.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if stage_of(child.cmdline()) == "circusd":
                return child
    raise RuntimeError("no circusd under `ingest up`")


def snapshot(circusd: psutil.Process) -> dict[int, Proc]:
    """Every process of the mesh: circusd and all its descendants."""
    found: dict[int, Proc] = {}
    for process in [circusd, *circusd.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess), process.oneshot():
            stage = stage_of(process.cmdline())
            role = stage
            if stage == "frontend":
                parent = process.parent()
                master = parent is None or stage_of(parent.cmdline()) != "frontend"
                role = "frontend (gunicorn master)" if master else "frontend (worker)"
            times = process.cpu_times()
            found[process.pid] = Proc(
                process.pid,
                stage,
                role,
                times.user + times.system,
                process.memory_info().rss,
                wakeups_of(process.pid),
            )
    return found


def stage_key(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


@dataclass
class CpuDelta:
    """CPU seconds each stage took between two snapshots."""

    by_stage: dict[str, float]
    exited: list[Proc]  # processes gone by the second snapshot: their last CPU is lost
    started: list[Proc]  # processes new in the second: all their CPU is counted
    wakeups_by_stage: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.by_stage.values())


def cpu_delta(before: dict[int, Proc], after: dict[int, Proc]) -> CpuDelta:
    by_stage: dict[str, float] = defaultdict(float)
    wakeups: dict[str, int] = defaultdict(int)
    for stage in STAGE_ORDER:
        by_stage[stage] = 0.0
    for pid, proc in after.items():
        by_stage[proc.stage] += proc.cpu - (before[pid].cpu if pid in before else 0.0)
        wakeups[proc.stage] += proc.wakeups - (before[pid].wakeups if pid in before else 0)
    return CpuDelta(
        dict(by_stage),
        exited=[p for pid, p in before.items() if pid not in after],
        started=[p for pid, p in after.items() if pid not in before],
        wakeups_by_stage=dict(wakeups),
    )


def own_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


# --- The Firestore emulator: beside the mesh, not in it -----------------------------------

EMULATOR_ROW = "Firestore emulator (Google's stand-in; not the mesh)"


def emulator_cpu(emulator: FirestoreEmulator) -> dict[int, float]:
    """CPU seconds (user + system) of the emulator's processes: the `gcloud` wrapper this
    process started and its descendants, the JVM among them."""
    found: dict[int, float] = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        wrapper = psutil.Process(emulator.process.pid)
        for process in [wrapper, *wrapper.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
    return found


def outside_cpu(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def check_outside_mesh(mesh: dict[int, Proc], emulator: FirestoreEmulator | None) -> None:
    """The emulator is this process's child, not circusd's, so snapshot() must not see it;
    if it ever did, its JVM would be counted as mesh CPU and the rows below double-count."""
    if emulator is None:
        return
    shared = set(mesh) & set(emulator_cpu(emulator))
    if shared:
        raise RuntimeError(f"emulator processes {sorted(shared)} counted as mesh processes")


# --- Commit times from the store ---------------------------------------------------------

CommitTimes = Callable[[list[str]], dict[str, float]]  # article ids -> committed_at (POSIX)


@contextlib.contextmanager
def commit_times(running: RunningMesh) -> Iterator[CommitTimes]:
    """How to read the commit time of articles from the mesh's store: {id: committed_at}
    for those of the ids that are committed.

    Either store stamps the commit with its own clock: SQLite with the saver's, the emulator
    with the JVM's. Both run on this host, so both are this host's wall clock, the clock
    run_round() converts the first POST's time to."""
    if running.settings.store == "sqlite":
        yield lambda ids: committed_at(running, ids)
        return
    # Imported here: the Google client (grpc, protobuf) is of no use to a SQLite run.
    from store.firestore import open_client
    from store.firestore.ids import document_id, marker_path
    from store.firestore.reader import existing_documents

    # The store's own client, opened from the mesh's settings as the savers open theirs
    # (project, database, emulator address).
    client = open_client(running.settings)

    def markers(ids: list[str]) -> dict[str, float]:
        # An article's marker is articles/{document_id(id)}; committed_at is the server's
        # REQUEST_TIME of the commit that created it (store/firestore/writer.py).
        by_path = {marker_path(document_id(i)): i for i in ids}
        return {
            by_path[snapshot.reference.path]: snapshot.get("committed_at").timestamp()
            for snapshot in existing_documents(client, list(by_path), ["committed_at"])
        }

    try:
        yield markers
    finally:
        client.close()


# --- Cold start --------------------------------------------------------------------------


@dataclass
class ColdStart:
    first_202: float  # seconds from `ingest up` to the first 202
    first_counted: float  # ... to that article's counts readable
    idle: dict[int, Proc] = field(default_factory=dict)
    idle_cpu: CpuDelta | None = None
    idle_emulator_cpu: float | None = None  # --store firestore: the emulator, same 10 s


def start_cold(settings: Settings, data_dir: Path, text: str) -> tuple[RunningMesh, ColdStart]:
    """`ingest up --foreground` on `settings`; the mesh once one article is counted."""
    command = [str(Path(sys.executable).with_name("ingest")), "up", "--foreground"]
    # As tests/e2e/conftest.py's ingest(): the settings travel as INGEST_* variables.
    env = {**os.environ, **settings.to_environ()}
    with open(data_dir / "ingest-up.log", "wb") as output:  # the child keeps its own copy
        started = time.monotonic()
        cli = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        first_202, key = first_accepted(settings, cli, text, started)
        running = RunningMesh(settings, cli, key)
        first_counted = wait_counted(running, started)
    except BaseException:
        # `ingest up --foreground` forwards SIGTERM to circusd, which stops every process.
        cli.terminate()
        cli.wait(timeout=120)
        raise
    return running, ColdStart(first_202, first_counted)


def first_accepted(
    settings: Settings, cli: subprocess.Popen, text: str, started: float
) -> tuple[float, str]:
    """Seconds from `started` to the first 202, and the API key (`ingest up` makes it)."""
    body = {"publication": "Cold Start", "content": text, "id": "cold-0"}
    with httpx.Client(timeout=30.0) as client:
        while time.monotonic() - started < COLD_TIMEOUT:
            if cli.poll() is not None:
                raise RuntimeError(f"`ingest up` exited with {cli.returncode}: see its log")
            keys = settings.load_api_keys()  # empty until `ingest up` has written the file
            if keys:
                try:
                    # A long timeout: before gunicorn runs, a connection waits in the socket's
                    # backlog (Circus binds it first), answered as soon as a worker is up.
                    answer = client.post(
                        f"http://{settings.http_host}:{settings.http_port}/articles",
                        json=body,
                        headers={"Authorization": f"Bearer {keys[0]}"},
                    )
                except httpx.TransportError:
                    answer = None
                if answer is not None and answer.status_code == 202:
                    return time.monotonic() - started, keys[0]
            time.sleep(0.02)
    raise RuntimeError(f"no 202 within {COLD_TIMEOUT:.0f} s of `ingest up`")


def wait_counted(running: RunningMesh, started: float) -> float:
    while time.monotonic() - started < COLD_TIMEOUT:
        publications = running.http.get("/publications").json()["publications"]
        if sum(p["articles"] for p in publications) >= 1:
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"the first article was not counted within {COLD_TIMEOUT:.0f} s")


# --- Rounds ------------------------------------------------------------------------------


@dataclass
class Round:
    number: int
    articles: int
    ceiling_seconds: float
    ceiling_cpu: float
    mesh_seconds: float  # first POST to the store commit of the last article
    drain_poll_seconds: float  # the load tool's end to end (drain seen by polling), context
    stored: int  # the round's articles with a marker in the store
    cpu: CpuDelta
    load_tool_cpu: float  # this process (the load tool's threads), not in the mesh
    emulator_cpu: float | None  # --store firestore: the emulator's processes, not in the mesh
    load_average: float  # 1 min, before the round's ceiling
    finish_spread: float | None = None  # seconds between the extractors' last batches

    @property
    def ceiling_rate(self) -> float:
        return self.articles / self.ceiling_seconds

    @property
    def mesh_rate(self) -> float:
        return self.articles / self.mesh_seconds

    @property
    def ratio(self) -> float:
        return self.mesh_rate / self.ceiling_rate

    @property
    def cpu_ratio(self) -> float:
        return self.cpu.total / self.ceiling_cpu


def all_committed(
    commits_of: CommitTimes, ids: list[str], timeout: float = 600.0
) -> dict[str, float]:
    """The commit time of every article, once all are committed. The drain seen through
    control's reports has once come back before the last article of a sub-second burst
    was even dispatched (round 3 of a run: no marker at all); the store's markers are the
    truth, so wait for them."""
    deadline = time.monotonic() + timeout
    while len(commits := commits_of(ids)) < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(commits)} of {len(ids)} committed after {timeout} s")
        time.sleep(0.2)
    return commits


def run_round(
    number: int,
    running: RunningMesh,
    circusd: psutil.Process,
    commits_of: CommitTimes,
    emulator: FirestoreEmulator | None,
    corpus: Sequence[str],
    count: int,
    extractors: int,
) -> Round:
    load_average = os.getloadavg()[0]
    texts = [corpus[i % len(corpus)] for i in range(count)]  # as articles() cycles them
    log.print(f"round {number}: ceiling, NER only, {extractors} processes, {count} texts")
    ceiling_run = ceiling_with_cpu(texts, extractors)

    tag = f"round{number}"
    log.print(f"round {number}: mesh, {count} articles")
    wall_offset = time.time() - time.monotonic()  # committed_at is wall clock, started is not
    emulator_before = emulator_cpu(emulator) if emulator is not None else {}
    before, tool_before = snapshot(circusd), own_cpu()
    result = post(running, articles(corpus, count, tag), f"round {number}: mesh", count)
    drained(running, result, max(600.0, count / 2))
    commits = all_committed(commits_of, [f"{tag}-{i}" for i in range(count)])
    after, tool_after = snapshot(circusd), own_cpu()
    emulator_after = emulator_cpu(emulator) if emulator is not None else {}
    drain_poll = result.end_to_end_seconds
    assert drain_poll is not None  # drained() raised otherwise
    spread = finish_spread(running.settings, result.started + wall_offset)
    return Round(
        number=number,
        articles=count,
        ceiling_seconds=ceiling_run.seconds,
        ceiling_cpu=ceiling_run.cpu_seconds,
        mesh_seconds=max(commits.values()) - (result.started + wall_offset),
        drain_poll_seconds=drain_poll,
        stored=len(commits),
        cpu=cpu_delta(before, after),
        load_tool_cpu=tool_after - tool_before,
        emulator_cpu=(
            outside_cpu(emulator_before, emulator_after) if emulator is not None else None
        ),
        load_average=load_average,
        finish_spread=spread,
    )


def finish_spread(settings: Settings, since: float) -> float | None:
    """Seconds between the first and the last extractor to finish its part of the round,
    from their "batch extracted" log lines since `since` (wall clock): while one extractor
    finishes alone, the other's core idles. None if fewer than two extractors logged."""
    last: dict[int, float] = {}
    with open(settings.data_path / "logs" / "extractor.log", encoding="utf-8") as lines:
        for line in lines:
            if '"batch extracted"' not in line:
                continue
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["time"]).timestamp()
            if at >= since:
                last[entry["pid"]] = max(at, last.get(entry["pid"], at))
    return max(last.values()) - min(last.values()) if len(last) > 1 else None


def soak(running: RunningMesh, corpus: Sequence[str], count: int) -> LoadResult:
    log.print(f"soak: {count} articles")
    result = post(running, articles(corpus, count, "soak"), "soak", count)
    return drained(running, result, max(600.0, count / 2))


# --- Report ------------------------------------------------------------------------------


def mb(value: int) -> str:
    return f"{value / 2**20:.0f}"


def growth_mb(value: int) -> str:
    return f"{value / 2**20:+.1f}"


def ms_per_article(cpu: float, count: int) -> str:
    return f"{cpu / count * 1000:.2f}"


def cold_report(cold: ColdStart) -> list[str]:
    assert cold.idle_cpu is not None
    lines = [
        "Cold start (`ingest up --foreground`, as `make run` runs it, to ...):",
        "",
        "| measure | seconds |",
        "|---|---:|",
        f"| first 202 (a POST retried until accepted) | {cold.first_202:.2f} |",
        f"| that article counted (GET /publications) | {cold.first_counted:.2f} |",
        "",
        f"Idle CPU (both extractors loaded, first article counted, {IDLE_SECONDS:.0f} s with "
        "nothing to do):",
        "",
        f"| stage | CPU s over {IDLE_SECONDS:.0f} s | % of one core | wake-ups/s (all its "
        "threads) |",
        "|---|---:|---:|---:|",
    ]
    idle = cold.idle_cpu
    for stage, cpu in sorted(idle.by_stage.items(), key=lambda kv: stage_key(kv[0])):
        wakeups = idle.wakeups_by_stage.get(stage, 0) / IDLE_SECONDS
        lines.append(f"| {stage} | {cpu:.3f} | {cpu / IDLE_SECONDS * 100:.2f} | {wakeups:.0f} |")
    total = idle.total
    wakeups = sum(idle.wakeups_by_stage.values()) / IDLE_SECONDS
    lines.append(
        f"| **all mesh processes** | **{total:.3f}** | **{total / IDLE_SECONDS * 100:.2f}** | "
        f"**{wakeups:.0f}** |"
    )
    if cold.idle_emulator_cpu is not None:
        cpu = cold.idle_emulator_cpu
        lines.append(f"| {EMULATOR_ROW} | {cpu:.3f} | {cpu / IDLE_SECONDS * 100:.2f} | - |")
    return lines


def rounds_report(rounds: list[Round], idle_cpu_per_second: float, store: str) -> list[str]:
    lines = [
        "Rounds (ceiling, then mesh, on the same texts; one mesh throughout):",
        "",
        "| round | articles | load avg 1 min | ceiling docs/s | mesh articles/s (first POST "
        "to last commit) | **mesh / ceiling** | mesh articles/s (drain polled) | stored | "
        "mesh CPU ms/article | ceiling CPU ms/article | **CPU mesh / ceiling** | "
        "extractors' finish spread s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        spread = "-" if r.finish_spread is None else f"{r.finish_spread:.2f}"
        lines.append(
            f"| {r.number} | {r.articles} | {r.load_average:.2f} | {r.ceiling_rate:.1f} | "
            f"{r.mesh_rate:.1f} | **{r.ratio:.3f}** | {r.articles / r.drain_poll_seconds:.1f} | "
            f"{r.stored} | {ms_per_article(r.cpu.total, r.articles)} | "
            f"{ms_per_article(r.ceiling_cpu, r.articles)} | **{r.cpu_ratio:.3f}** | {spread} |"
        )
    stages = sorted({s for r in rounds for s in r.cpu.by_stage}, key=stage_key)
    header = " | ".join(f"round {r.number}" for r in rounds)
    lines += [
        "",
        "CPU ms per article, by stage (psutil user + system of every process of the stage, "
        "before/after the mesh half of each round):",
        "",
        f"| stage | {header} | all rounds | share of mesh CPU |",
        "|---|" + "---:|" * (len(rounds) + 2),
    ]
    total_articles = sum(r.articles for r in rounds)
    mesh_cpu = sum(r.cpu.total for r in rounds)
    for stage in stages:
        cells = " | ".join(
            ms_per_article(r.cpu.by_stage.get(stage, 0.0), r.articles) for r in rounds
        )
        pooled = sum(r.cpu.by_stage.get(stage, 0.0) for r in rounds)
        lines.append(
            f"| {stage} | {cells} | {ms_per_article(pooled, total_articles)} | "
            f"{pooled / mesh_cpu * 100:.2f}% |"
        )
    cells = " | ".join(ms_per_article(r.cpu.total, r.articles) for r in rounds)
    lines.append(
        f"| **mesh, all processes** | {cells} | {ms_per_article(mesh_cpu, total_articles)} | 100% |"
    )
    cells = " | ".join(ms_per_article(r.ceiling_cpu, r.articles) for r in rounds)
    ceiling_cpu = sum(r.ceiling_cpu for r in rounds)
    lines.append(
        f"| ceiling workers (NER only) | {cells} | {ms_per_article(ceiling_cpu, total_articles)} "
        "| |"
    )
    cells = " | ".join(ms_per_article(r.load_tool_cpu, r.articles) for r in rounds)
    tool = sum(r.load_tool_cpu for r in rounds)
    lines.append(
        f"| load tool (this process; not in the mesh) | {cells} | "
        f"{ms_per_article(tool, total_articles)} | |"
    )
    emulator_cpus = [r.emulator_cpu for r in rounds if r.emulator_cpu is not None]
    if len(emulator_cpus) == len(rounds):
        cells = " | ".join(
            ms_per_article(cpu, r.articles) for cpu, r in zip(emulator_cpus, rounds, strict=True)
        )
        lines.append(
            f"| {EMULATOR_ROW} | {cells} | {ms_per_article(sum(emulator_cpus), total_articles)} | |"
        )

    ratios = [r.ratio for r in rounds]
    cpu_ratios = [r.cpu_ratio for r in rounds]
    others = {s: sum(r.cpu.by_stage.get(s, 0.0) for r in rounds) for s in stages}
    non_extractor = sum(cpu for s, cpu in others.items() if s != "extractor")
    # Issue 15's targets are for the embedded store; on the emulator every commit is a gRPC
    # call to a JVM sharing the two cores, so the rate is held to a lower bar.
    median_target, lowest_target = (">= 0.97", ">= 0.93") if store == "sqlite" else (">= 0.90", "")
    lines += [
        "",
        "Summary:",
        "",
        "| measure | value | target |",
        "|---|---:|---:|",
        f"| mesh / ceiling, median of {len(rounds)} rounds | **{statistics.median(ratios):.3f}** "
        f"| {median_target} |",
        f"| mesh / ceiling, lowest round | **{min(ratios):.3f}** | {lowest_target} |",
        f"| mesh CPU / ceiling CPU per article, all rounds | **{mesh_cpu / ceiling_cpu:.3f}** "
        "| <= 1.03 |",
        f"| mesh CPU / ceiling CPU per article, median round | {statistics.median(cpu_ratios):.3f} "
        "| |",
        f"| extractor CPU / ceiling CPU per article, all rounds | "
        f"{others.get('extractor', 0.0) / ceiling_cpu:.3f} | |",
        f"| everything but the extractors, share of mesh CPU | "
        f"{non_extractor / mesh_cpu * 100:.2f}% | |",
    ]
    spreads = [r.finish_spread for r in rounds if r.finish_spread is not None]
    if spreads:
        lines.append(
            f"| extractors' finish spread (one core idle meanwhile), median round | "
            f"{statistics.median(spreads):.2f} s | |"
        )
    for stage in stages:
        if stage != "extractor":
            lines.append(
                f"| {stage}, share of mesh CPU | {others[stage] / mesh_cpu * 100:.2f}% | |"
            )
    # The CPU window ends when the drain is seen (the ledger reports once a second), a little
    # after the last commit: idle time the mesh's CPU includes and the ceiling's does not.
    tail = sum(r.drain_poll_seconds - r.mesh_seconds for r in rounds) / len(rounds)
    tail_cpu = idle_cpu_per_second * tail * len(rounds)
    lines += [
        "",
        f"The mesh's CPU window ends when the drain is seen, on average {tail:.2f} s after the "
        f"last commit: at the idle rate measured above, about "
        f"{ms_per_article(tail_cpu, total_articles)} ms/article "
        f"({tail_cpu / mesh_cpu * 100:.2f}% of the mesh's CPU) is idle time counted in.",
    ]
    problems = [
        f"WARNING: round {r.number} stored {r.stored} of its {r.articles} articles"
        for r in rounds
        if r.stored != r.articles
    ]
    for r in rounds:
        for proc in r.cpu.exited:
            problems.append(
                f"WARNING: round {r.number}: {proc.role} (pid {proc.pid}) exited; its CPU "
                "since the snapshot before the round is not counted"
            )
        for proc in r.cpu.started:
            problems.append(
                f"note: round {r.number}: {proc.role} (pid {proc.pid}) started during the "
                "round; all its CPU is counted"
            )
    return lines + (["", *problems] if problems else [])


def footprint_report(
    idle: dict[int, Proc],
    after_rounds: dict[int, Proc],
    after_soak: dict[int, Proc] | None,
    soak_count: int,
    rounds_articles: int,
) -> list[str]:
    last = after_soak if after_soak is not None else after_rounds
    columns = ["idle RSS MB", f"after the rounds ({rounds_articles} articles) RSS MB"]
    if after_soak is not None:
        columns.append(f"after the soak (+{soak_count} articles) RSS MB")
    columns.append("growth since idle MB")
    lines = [
        "RSS of every mesh process (idle: after cold start and the first article):",
        "",
        "| process | pid | " + " | ".join(columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    pids = sorted(
        set(idle) | set(after_rounds) | set(last),
        key=lambda pid: (
            *stage_key((idle.get(pid) or last.get(pid) or after_rounds[pid]).stage),
            pid,
        ),
    )
    snapshots = [idle, after_rounds, *([after_soak] if after_soak is not None else [])]
    for pid in pids:
        proc = idle.get(pid) or after_rounds.get(pid) or last[pid]
        cells = [mb(s[pid].rss) if pid in s else "-" for s in snapshots]
        growth = growth_mb(last[pid].rss - idle[pid].rss) if pid in idle and pid in last else "-"
        lines.append(f"| {proc.role} | {pid} | " + " | ".join(cells) + f" | {growth} |")
    totals = [mb(sum(p.rss for p in s.values())) for s in snapshots]
    growth = growth_mb(sum(p.rss for p in last.values()) - sum(p.rss for p in idle.values()))
    lines.append(
        "| **all mesh processes** | | "
        + " | ".join(f"**{t}**" for t in totals)
        + f" | **{growth}** |"
    )
    changed = set(idle) ^ set(last)
    if changed:
        lines += [
            "",
            f"note: {len(changed)} process(es) started or exited between the snapshots (-)",
        ]
    return lines


def warm_up_articles(store: str) -> int:
    """Articles posted before the rounds. On Firestore more: the emulator's JVM compiles its
    hot paths over its first thousands of writes (its CPU per article fell from 3.0 to
    0.55 ms over five rounds of 1,500 after a 64-article warm-up), and a real Firestore
    does not run on this host at all."""
    return WARM_UP_ARTICLES if store == "sqlite" else 3000


def header(args: argparse.Namespace, settings: Settings, load_before: float) -> list[str]:
    options = (
        (f" --soak {args.soak}" if args.soak else "")
        + (f" --store {args.store}" if args.store != "sqlite" else "")
        + "".join(f" --set {item}" for item in args.set)
    )
    store = {
        "sqlite": "SQLite",
        "firestore": "Firestore, on Google's emulator (started before the mesh, outside it: "
        "not in the mesh's CPU or RSS)",
    }[settings.store]
    return [
        f"### Interleaved rounds: {args.rounds} x {args.articles} articles, "
        f"{args.extractors} extractors, {settings.store} store",
        "",
        f"`python -m bench.rounds --rounds {args.rounds} --articles {args.articles} "
        f"--extractors {args.extractors}{options}`; "
        f"{psutil.cpu_count()} cores, Python {platform.python_version()}, "
        f"spaCy {spacy.__version__}, {MODEL}; load average {load_before:.2f} at the start. "
        f"One mesh, never restarted: store {store}, default secure links (ipc in a "
        f"private run folder), {settings.web_workers} frontend processes, "
        f"{settings.savers} saver(s), **text_cache_entries = 0** (the Lee corpus has 300 "
        "texts, cycled with distinct ids: the cache would serve the repeats without NER). "
        f"Warmed up with {warm_up_articles(args.store)} articles before the rounds.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--articles", type=int, default=1500, help="articles per round")
    parser.add_argument("--extractors", type=int, default=2)
    parser.add_argument("--soak", type=int, default=0, help="articles posted after the rounds")
    parser.add_argument(
        "--store",
        choices=STORES,
        default="sqlite",
        help="firestore: on Google's emulator, started here, outside the mesh",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a mesh setting other than its default (e.g. batch_size=32), to compare",
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    corpus = lee_articles()

    with contextlib.ExitStack() as stack:
        emulator: FirestoreEmulator | None = None
        store_settings: dict[str, object] = {"store": args.store}
        if args.store == "firestore":
            log.print("Firestore emulator: starting")
            try:
                emulator = stack.enter_context(FirestoreEmulator.start())
            except (EmulatorUnavailable, EmulatorFailed) as exc:
                # No fallback to SQLite: a run asked for Firestore reports Firestore or nothing.
                log.print(f"--store firestore: no Firestore emulator: {exc}", markup=False)
                return 1
            store_settings |= {
                "firestore_project": emulator.project,
                "firestore_emulator_host": emulator.host,
            }
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rounds-")))
        changed = dict(item.split("=", 1) for item in args.set)
        settings = isolated_settings(
            data_dir,
            extractors=args.extractors,
            text_cache_entries=0,
            **store_settings,
            **changed,
        )
        log.print("cold start: ingest up --foreground")
        running, cold = start_cold(settings, data_dir, corpus[0])
        try:
            commits_of = stack.enter_context(commit_times(running))
            circusd = find_circusd(running.process)
            wait_for_extractors(settings, args.extractors)
            time.sleep(SETTLE_SECONDS)
            emulator_idle = emulator_cpu(emulator) if emulator is not None else {}
            cold.idle = snapshot(circusd)
            check_outside_mesh(cold.idle, emulator)
            log.print(f"idle: {IDLE_SECONDS:.0f} s")
            time.sleep(IDLE_SECONDS)
            cold.idle_cpu = cpu_delta(cold.idle, snapshot(circusd))
            if emulator is not None:
                cold.idle_emulator_cpu = outside_cpu(emulator_idle, emulator_cpu(emulator))

            warm_up = warm_up_articles(args.store)
            warm = articles(corpus, warm_up, "warm")
            drained(running, post(running, warm, "warm-up", warm_up), 600.0)
            rounds = [
                run_round(
                    n,
                    running,
                    circusd,
                    commits_of,
                    emulator,
                    corpus,
                    args.articles,
                    args.extractors,
                )
                for n in range(1, args.rounds + 1)
            ]
            after_rounds = snapshot(circusd)
            check_outside_mesh(after_rounds, emulator)
            after_soak, soaked = None, None
            if args.soak:
                soaked = soak(running, corpus, args.soak)
                after_soak = snapshot(circusd)
        finally:
            stop_mesh(running)

    lines = header(args, settings, load_before) + cold_report(cold) + [""]
    assert cold.idle_cpu is not None
    lines += [*rounds_report(rounds, cold.idle_cpu.total / IDLE_SECONDS, args.store), ""]
    lines += footprint_report(
        cold.idle, after_rounds, after_soak, args.soak, args.rounds * args.articles
    )
    if soaked is not None:
        seconds = soaked.end_to_end_seconds
        assert seconds is not None  # drained() raised otherwise
        lines += [
            "",
            f"Soak: {soaked.accepted} articles accepted, end to end (drain polled) "
            f"{seconds:.1f} s = {soaked.accepted / seconds:.1f} articles/s; "
            f"{soaked.retried} POSTs re-sent",
        ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
