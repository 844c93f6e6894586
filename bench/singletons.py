"""Each singleton of the mesh alone, and one extractor: how many extractors each can feed.

    .venv/bin/python -m bench.singletons

One run measures, on this machine, each with real processes and real frames:

1. one extractor: the extractor's own `EntityExtractor` (NER only, batches of 64) on the
   300 Lee news articles, in this process; and bench/ceiling.py's NER-only bound in one
   process as a cross-check. Its results are the frames and extractions used below;
2. the ledger alone: a real journal pre-filled with --ledger-articles articles and the real
   ledger process (`python -m services.frontend.ledger`, as Circus starts it), with a
   stand-in peer here that PULLs every dispatch and PUSHes the Acks back at once (what is
   waiting, up to --ack-batch articles per Ack, what a saver's flush sends at most):
   articles dispatched and acknowledged per second, until the journal is empty;
3. the saver inlet alone (`python -m services.saver_inlet`: its module's run(), whatever
   the code is today): real results ([route key, Extraction], as extractors send them)
   through it, from a producer thread here to a saver stand-in here (a DEALER that says
   SAVER_READY, as a saver does);

   (2) and (3) run twice: on the single host's private ipc sockets, and with every link on
   CURVE tcp over loopback, as between hosts;
4. one saver per store: bench/saver_store.py's measurement (Store.commit() of flush-sized
   batches of real extractions) on SQLite (publications mixed: one group, as the saver
   commits there) and on the Firestore emulator (one publication per batch, likewise);
5. the control server alone (`python -m services.control`): a stop-writes / resume round
   trip through the CLI's own `ask()` with K simulated gate-keeping processes (each its own
   SUB, confirming at once and reporting every second, as ControlLink does), the CPU their
   heartbeats cost, and the reports per second it absorbs when flooded.

Each rate is printed as a wall rate and as CPU seconds per item of the measured process
(psutil, user + system), and as a ratio to one extractor: "one ledger feeds X extractors".
The machine has 2 cores shared with other people's work: wall rates are noisy, and the
bench's own stand-ins share the cores with the process measured; CPU per item is the
steadier figure (capacity = 1 / CPU per item, given a core of its own).
Prints Markdown on stdout (bench/RESULTS.md keeps the runs); progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import psutil
import zmq

from bench.ceiling import MODEL, ceiling
from bench.saver_store import Timing, instrument, replicate
from bench.saver_store import run as commit_all
from common.config import DEFAULT_SKIP_LABELS, MESH_ENDPOINTS, Settings, load_settings
from common.control import CONTROL_BYTES, REPORT_SECONDS, Report, State, ask
from common.control import decode as decode_control
from common.control import encode as encode_control
from common.messages import (
    SAVER_READY,
    SAVER_READY_SECONDS,
    Ack,
    Acked,
    Entity,
    Extraction,
    encode,
    route_key,
)
from common.security import generate_keys, is_tcp
from common.sockets import MeshSockets, free_tcp_port, nobody_listens
from loader.corpora import LEE_PUBLICATIONS, lee_articles
from services.extractor.inbox import Inbox
from services.extractor.ner import EntityExtractor, load_model
from services.frontend.journal import Entry, Journal
from services.frontend.ledger.dispatcher import Ledger
from store.emulator import EmulatorFailed, EmulatorUnavailable, FirestoreEmulator
from store.firestore import open_firestore_store
from store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parent.parent
BATCH = 64  # the extractor's default batch_size
START_TIMEOUT = 60.0
STALL_SECONDS = 15.0  # a measurement that makes no progress this long has failed
IDLE_SECONDS = 3.0  # how long control's CPU is watched with heartbeats only


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- Measuring -----------------------------------------------------------------------------


def cpu_seconds(process: psutil.Process, *, tree: bool = False) -> float:
    """User + system CPU of a process (and its children, for the emulator's JVM)."""
    total = 0.0
    for proc in [process, *(process.children(recursive=True) if tree else [])]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


@dataclass
class Rate:
    name: str
    unit: str  # what one item is: an article, a frame, a report, a doc
    items: int
    seconds: float  # wall
    cpu: float  # CPU seconds of the measured process over the same window
    notes: list[str] = field(default_factory=list)
    # "mesh": one per mesh; "frontend host": one per frontend host (more hosts, more of
    # them); "pool": as many processes as wanted (savers)
    scope: str = "mesh"

    @property
    def per_second(self) -> float:
        return self.items / self.seconds

    @property
    def cpu_per_item(self) -> float:
        return self.cpu / self.items

    def fed(self, extractor: Rate) -> tuple[float, float]:
        """Extractors this keeps up with, each extractor on a core of its own (1 / its CPU
        per doc: steadier than its wall rate on a shared machine): by this one's wall rate,
        and by its CPU per item (it too on a core of its own). One article is one item for
        every data-plane stage."""
        return (
            self.per_second * extractor.cpu_per_item,
            extractor.cpu_per_item / self.cpu_per_item if self.cpu else float("inf"),
        )


class Service:
    """One mesh process started as Circus starts it (`python -m MODULE`, the settings in
    its environment, metrics in a multiprocess folder), ready once `ready` listens."""

    def __init__(self, module: str, settings: Settings, ready: str) -> None:
        settings.metrics_path.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **settings.to_environ(),
            "PROMETHEUS_MULTIPROC_DIR": str(settings.metrics_path),
        }
        self.module = module
        self.log_path = settings.data_path / f"{module}.log"
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", module], env=env, cwd=REPO, stdout=log, stderr=log
            )
        self.process = psutil.Process(self.popen.pid)
        deadline = time.monotonic() + START_TIMEOUT
        while not listening(ready):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{module} did not start: {self.log_tail()}")
            time.sleep(0.05)

    def cpu(self) -> float:
        return cpu_seconds(self.process)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-1500:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def listening(endpoint: str) -> bool:
    """Something accepts connections at `endpoint` (a CURVE server takes a bare TCP connect
    and drops it: harmless)."""
    if not is_tcp(endpoint):
        return not nobody_listens(endpoint)
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.2):
            return True
    except OSError:
        return False


def private_settings(root: Path, name: str, *, curve: bool = False) -> Settings:
    """Settings with their own data folder under `root`: their own ipc sockets, or every
    mesh link on CURVE tcp (the links between hosts), with the keys in root/keys."""
    data = root / name
    data.mkdir()
    links: dict[str, str] = {}
    if curve:
        keys = root / "keys"
        if not keys.exists():
            generate_keys(keys)
        links = {field: f"tcp://127.0.0.1:{free_tcp_port()}" for field in MESH_ENDPOINTS}
        links["key_dir"] = str(keys)
    # load_settings({}): the defaults, never this shell's INGEST_* variables.
    return load_settings({}, data_dir=str(data), **links)


def link_name(curve: bool) -> str:
    return "CURVE tcp" if curve else "ipc"


# --- 1. One extractor -----------------------------------------------------------------------


def one_extractor(texts: list[str], passes: int) -> tuple[Rate, list[list[Entity]]]:
    """The extractor's own NER (EntityExtractor, batches of 64) over the corpus, warm,
    `passes` times; the entities of each text."""
    # Configured as the service configures it, vocabulary budget included (without it every
    # batch runs in a memory zone, where spaCy's tokenizer caches nothing: ~8% more CPU).
    extractor = EntityExtractor(
        load_model(MODEL),
        DEFAULT_SKIP_LABELS,
        vocabulary_strings=Settings().extractor_vocabulary_strings,
    )
    extractor.extract(texts[:BATCH])  # a long-running extractor is past its first batch
    me = psutil.Process()
    found: list[list[Entity]] = []
    cpu, started = cpu_seconds(me), time.perf_counter()
    for _ in range(passes):
        found = []
        for start in range(0, len(texts), BATCH):
            found += extractor.extract(texts[start : start + BATCH])
    rate = Rate(
        "one extractor (EntityExtractor, batches of 64)",
        "doc",
        passes * len(texts),
        time.perf_counter() - started,
        cpu_seconds(me) - cpu,
    )
    return rate, found


# --- 2. The ledger ----------------------------------------------------------------------------


def publication(i: int) -> str:
    return LEE_PUBLICATIONS[i % len(LEE_PUBLICATIONS)]


def ledger_alone(
    texts: list[str], count: int, ack_batch: int, root: Path, curve: bool
) -> tuple[Rate, dict[str, float]]:
    """Articles/s the real ledger dispatches and retires with an instant peer; also a real
    ledger's report counters (for the control bench's report sizes)."""
    settings = private_settings(root, f"ledger-{link_name(curve)[:4]}", curve=curve)
    journal = Journal(settings.journal_path, synchronous=settings.journal_synchronous)
    journal.set_gate("accepting", 1)
    for start in range(0, count, 1000):
        journal.append(
            [
                Entry(f"bench-{i}", publication(i), texts[i % len(texts)])
                for i in range(start, min(count, start + 1000))
            ]
        )
    counters = Ledger(journal, window=settings.window, lease_seconds=60, max_attempts=5).counters()
    journal.close()

    ledger = Service("services.frontend.ledger", settings, settings.ack_endpoint)
    sockets = MeshSockets(settings)
    try:
        time.sleep(1.0)  # past its start-up, into its loop (it reads the journal, sends nothing)
        cpu = ledger.cpu()
        # The peer: an extractor's inbox (asks for chunks of ack_batch) and a saver's PUSH,
        # with no work in between.
        inbox = Inbox(sockets, {settings.ledger_id: settings.dispatch_endpoint}, ack_batch)
        replies = sockets.connect(zmq.PUSH, settings.ack_endpoint)
        acked: set[str] = set()
        received, acks = 0, 0
        started: float | None = None
        while len(acked) < count:
            articles = inbox.receive(int(STALL_SECONDS * 1000))
            if not articles:
                raise RuntimeError(
                    f"the ledger stopped dispatching after {received} articles: {ledger.log_tail()}"
                )
            started = started or time.perf_counter()
            batch = [Acked(article.id, article.token) for article in articles]
            replies.send(encode(Ack(batch)))
            acks += 1
            received += len(batch)
            acked.update(a.id for a in batch)
        wait_journal_empty(settings.journal_path, ledger)
        assert started is not None
        rate = Rate(
            f"ledger: dispatch + ack ({link_name(curve)})",
            "article",
            count,
            time.perf_counter() - started,
            ledger.cpu() - cpu,
            [
                f"{count:,} articles pre-journaled; the peer asked for chunks of {ack_batch} and "
                f"acked {received / acks:.0f} articles per Ack on average ({acks} Acks); "
                f"{received - count} re-sends; "
                f"window {settings.window}, journal synchronous={settings.journal_synchronous}"
            ],
            scope="frontend host",
        )
    finally:
        sockets.close()
        ledger.stop()
    return rate, counters


def wait_journal_empty(path: Path, ledger: Service) -> None:
    """Until the ledger has deleted every acknowledged row (its last step per article)."""
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        deadline = time.monotonic() + STALL_SECONDS
        while reader.execute("SELECT 1 FROM journal LIMIT 1").fetchone() is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the journal did not empty: {ledger.log_tail()}")
            time.sleep(0.005)
    finally:
        reader.close()


# --- 3. The saver inlet -----------------------------------------------------------------------


def inlet_alone(extractions: list[Extraction], count: int, root: Path, curve: bool) -> Rate:
    """Frames/s through the saver inlet process from a producer to a saver stand-in."""
    settings = private_settings(root, f"inlet-{link_name(curve)[:4]}", curve=curve)
    # As extractors send them: [route key, Extraction], the key naming the publication.
    payloads = [[route_key(e.publication), encode(e)] for e in extractions]
    size = statistics.mean(sum(len(f) for f in p) for p in payloads)
    inlet = Service("services.saver_inlet", settings, settings.results_out_endpoint)
    sockets = MeshSockets(settings)
    try:
        outbox = sockets.connect(zmq.PUSH, settings.results_in_endpoint)
        saver = SaverStandIn(sockets, settings)
        if not saver.settle(outbox, payloads[0]):
            raise RuntimeError(f"nothing came out of the saver inlet: {inlet.log_tail()}")
        cpu = inlet.cpu()
        sender = threading.Thread(target=_send_all, args=(outbox, payloads, count), daemon=True)
        started = time.perf_counter()
        sender.start()
        got = saver.receive(count)
        seconds = time.perf_counter() - started
        sender.join()
        if got < count:
            raise RuntimeError(f"only {got} of {count} frames came through: {inlet.log_tail()}")
        return Rate(
            f"saver inlet: frames through ({link_name(curve)})",
            "frame",
            count,
            seconds,
            inlet.cpu() - cpu,
            [
                f"real results of the Lee corpus, [route key, Extraction], ~{size:.0f} bytes "
                "each, to one saver"
            ],
        )
    finally:
        sockets.close()
        inlet.stop()


def _send_all(outbox: zmq.Socket, payloads: list[list[bytes]], count: int) -> None:
    for n in range(count):
        outbox.send_multipart(payloads[n % len(payloads)])


class SaverStandIn:
    """What a saver does on the inlet's side, minus the store: a DEALER that tells the
    inlet it is there (SAVER_READY, every SAVER_READY_SECONDS) and takes what comes."""

    def __init__(self, sockets: MeshSockets, settings: Settings) -> None:
        self.socket = sockets.connect(zmq.DEALER, settings.results_out_endpoint)
        self._ready_at = 0.0

    def announce(self) -> None:
        if time.monotonic() >= self._ready_at:
            self.socket.send(SAVER_READY)
            self._ready_at = time.monotonic() + SAVER_READY_SECONDS

    def settle(self, outbox: zmq.Socket, probe: list[bytes]) -> bool:
        """Probe until a result comes through (the inlet has heard this saver), then drain;
        False if none does within a few seconds."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            self.announce()
            with contextlib.suppress(zmq.Again):
                outbox.send_multipart(probe, zmq.NOBLOCK)
            if self.socket.poll(100):
                time.sleep(0.5)  # the probe's stragglers, then nothing in flight
                while self.socket.poll(0):
                    self.socket.recv_multipart()
                return True
        return False

    def receive(self, count: int) -> int:
        got = 0
        while got < count:
            self.announce()
            if not self.socket.poll(int(STALL_SECONDS * 1000)):
                break
            while got < count:
                try:
                    self.socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                got += 1
        return got


# --- 4. One saver per store ---------------------------------------------------------------------


def one_saver(
    per_text: list[list[Entity]],
    sqlite_articles: int,
    firestore_articles: int,
    publications: int,
    batch: int,
    root: Path,
    firestore: bool,
) -> list[Rate]:
    """bench/saver_store.py's measurement: Store.commit() of flush-sized batches."""
    me = psutil.Process()
    rates = []
    extractions = replicate(per_text, sqlite_articles, publications)
    store = SqliteStore(root / "store.sqlite3")
    timing, cpu = Timing(), cpu_seconds(me)
    commit_all(store, extractions, batch, timing)
    rates.append(
        Rate(
            "one saver, SQLite",
            "article",
            timing.counted,
            timing.seconds,
            cpu_seconds(me) - cpu,
            [f"commit() of {batch} articles, {publications} publications, synchronous=FULL"],
            scope="pool",
        )
    )
    store.close()
    if not firestore:
        return rates
    try:
        emulator = FirestoreEmulator.start()
    except (EmulatorUnavailable, EmulatorFailed) as error:
        say(f"Firestore emulator skipped: {error}")
        return rates
    with emulator:
        settings = load_settings(
            {},
            store="firestore",
            firestore_project=emulator.project,
            firestore_emulator_host=emulator.host,
        )
        jvm = psutil.Process(emulator.process.pid)
        # The JVM compiles its hot paths during the first writes (bench/saver_store.py).
        warm = replicate(per_text, 600, publications)
        emulator.reset()
        store = open_firestore_store(settings)
        warm = [msgspec.structs.replace(e, id=f"warm-{e.id}") for e in warm]
        commit_all(store, warm, batch, Timing())
        store.close()
        emulator.reset()
        store = open_firestore_store(settings)
        timing = Timing()
        with contextlib.suppress(AttributeError):  # the writer's halves, where it has them
            instrument(store, timing)
        # The saver commits each publication on its own on Firestore (one group per
        # publication, services/saver/schedule.py): each batch here is one publication, of
        # consecutive distinct texts (not the corpus dealt out over publications, which
        # would give each one only a few texts, repeated, and coalesce unrealistically).
        extractions = [
            msgspec.structs.replace(e, publication=f"Publication {(i // batch) % publications}")
            for i, e in enumerate(replicate(per_text, firestore_articles, 1))
        ]
        cpu, jvm_cpu = cpu_seconds(me), cpu_seconds(jvm, tree=True)
        commit_all(store, extractions, batch, timing)
        store.close()
        notes = [
            f"commit() of {batch} articles of one publication; the emulator's JVM used "
            f"{cpu_seconds(jvm, tree=True) - jvm_cpu:.2f} CPU s beside it (same 2 cores); "
            "the bound is the store's time, not the saver's CPU"
        ]
        if timing.commits:
            notes.append(
                f"{timing.commits} Firestore commits: {timing.counted / timing.commits:.1f} "
                f"articles and {timing.doc_writes / timing.commits:.0f} document writes each"
            )
        rates.append(
            Rate(
                "one saver, Firestore emulator",
                "article",
                timing.counted,
                timing.seconds,
                cpu_seconds(me) - cpu,
                notes,
                scope="pool",
            )
        )
    return rates


# --- 5. The control server ------------------------------------------------------------------------


class Fleet:
    """K simulated gate-keeping processes (stage "frontend", which stop-writes must hear
    from): each has its own SUB to the state, confirms a new state at once, and reports
    every second, as ControlLink does. One thread, one context, one PUSH for the reports
    (control tells processes apart by the report's stage, host and pid)."""

    def __init__(self, settings: Settings, size: int) -> None:
        self.settings = settings
        self.size = size
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._ready = threading.Event()

    def __enter__(self) -> Fleet:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._thread.join(10)

    def _report(self, i: int, seq: int) -> bytes:
        return encode_control(Report("frontend", 100_000 + i, f"sim{i // 4}", seq, {}))

    def _run(self) -> None:
        context = zmq.Context()
        context.set(zmq.MAX_SOCKETS, self.size + 64)
        sockets = MeshSockets(self.settings, context)
        subs = []
        for _ in range(self.size):
            sub = sockets.connect(
                zmq.SUB, self.settings.control_state_endpoint, max_bytes=CONTROL_BYTES
            )
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            subs.append(sub)
        reports = sockets.connect(
            zmq.PUSH,
            self.settings.control_report_endpoint,
            hwm=10 * self.size,
            max_bytes=CONTROL_BYTES,
        )
        poller = zmq.Poller()
        index = {}
        for i, sub in enumerate(subs):
            poller.register(sub, zmq.POLLIN)
            index[sub] = i
        confirmed = [-1] * self.size
        next_beat = 0.0
        self._ready.set()
        try:
            while not self._stopping.is_set():
                for sub, _ in poller.poll(50):
                    i = index[sub]
                    while sub.poll(0):
                        state = decode_control(sub.recv())
                        if isinstance(state, State) and state.seq > confirmed[i]:
                            confirmed[i] = state.seq  # heard is applied: confirm at once
                            with contextlib.suppress(zmq.Again):
                                reports.send(self._report(i, state.seq), zmq.NOBLOCK)
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + REPORT_SECONDS
                    for i in range(self.size):
                        with contextlib.suppress(zmq.Again):
                            reports.send(self._report(i, confirmed[i]), zmq.NOBLOCK)
        finally:
            sockets.close()
            context.term()


@dataclass
class ControlResult:
    fleet: int
    stop_ms: list[float]
    resume_ms: list[float]
    status_ms: float
    status_bytes: int
    idle_cpu: float  # share of one core control uses with this fleet, heartbeats only
    base_cpu: float  # the same with no process at all (its own poll loop and broadcasts)

    @property
    def heartbeat_us(self) -> float | None:
        """CPU one heartbeat costs control, beyond its idle loop; None when the difference
        is under what CPU times resolve over the window (10 ms ticks)."""
        extra = self.idle_cpu - self.base_cpu
        if extra * IDLE_SECONDS < 0.05:
            return None
        return extra * REPORT_SECONDS / self.fleet * 1e6


def control_alone(
    fleets: Sequence[int],
    rounds: int,
    flood: int,
    samples: dict[str, dict[str, float]],
    root: Path,
) -> tuple[list[ControlResult], Rate, int]:
    settings = private_settings(root, "control")
    control = Service("services.control", settings, settings.control_command_endpoint)
    results = []
    try:
        base = idle_share(control)
        for size in fleets:
            say(f"control: a fleet of {size} simulated processes")
            with Fleet(settings, size):
                wait_live(settings, size)
                idle = idle_share(control)
                stop_ms, resume_ms = [], []
                for _ in range(rounds):
                    stop_ms.append(round_trip(settings, "stop-writes"))
                    resume_ms.append(round_trip(settings, "resume"))
                started = time.perf_counter()
                reply = ask(settings, "status")
                status_ms = (time.perf_counter() - started) * 1000
                results.append(
                    ControlResult(
                        size,
                        stop_ms,
                        resume_ms,
                        status_ms,
                        len(encode_control(reply)),
                        idle,
                        base,
                    )
                )
            time.sleep(3.5)  # the fleet's reports age out (LIVE_SECONDS) before the next
        say(f"control: flooded with {flood:,} reports")
        rate, per_report = absorb(settings, control, flood, samples)
    finally:
        control.stop()
    return results, rate, per_report


def idle_share(control: Service, seconds: float = IDLE_SECONDS) -> float:
    """The share of one core control uses while nothing but heartbeats comes in."""
    cpu, started = control.cpu(), time.perf_counter()
    time.sleep(seconds)
    return (control.cpu() - cpu) / (time.perf_counter() - started)


def wait_live(settings: Settings, size: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live = [r for r in ask(settings, "status").reports if r.host.startswith("sim")]
        if len(live) >= size:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the control server heard fewer than {size} simulated processes")


def round_trip(settings: Settings, command: str) -> float:
    """Milliseconds from sending the command until control answers that every live
    frontend and ledger process confirmed it (the CLI's own ask())."""
    started = time.perf_counter()
    reply = ask(settings, command, wait=10.0)
    seconds = time.perf_counter() - started
    if not reply.ok:
        raise RuntimeError(f"{command}: {reply.detail}")
    return seconds * 1000


def absorb(
    settings: Settings, control: Service, count: int, samples: dict[str, dict[str, float]]
) -> tuple[Rate, int]:
    """Reports/s the control server takes in when flooded: as many as a PUSH can send,
    then a status command, which it answers once it has taken what was queued before."""
    stages = list(samples.items())
    frames = []
    for i in range(1000):
        stage, counters = stages[i % len(stages)]
        frames.append(encode_control(Report(stage, 200_000 + i, f"flood{i // 8}", 0, counters)))
    per_report = round(statistics.mean(len(f) for f in frames))
    sockets = MeshSockets(settings)
    try:
        push = sockets.connect(zmq.PUSH, settings.control_report_endpoint, max_bytes=CONTROL_BYTES)
        push.send(frames[0])  # connected before the clock starts
        time.sleep(0.2)
        cpu, started = control.cpu(), time.perf_counter()
        for n in range(count):
            push.send(frames[n % len(frames)])
        reply = ask(settings, "status", timeout=60)
        seconds = time.perf_counter() - started
        heard = {r.pid for r in reply.reports if r.host.startswith("flood")}
        if len(heard) != len(frames):
            raise RuntimeError(f"control heard {len(heard)} of the {len(frames)} processes")
    finally:
        sockets.close()
    rate = Rate(
        "control: reports absorbed",
        "report",
        count,
        seconds,
        control.cpu() - cpu,
        [f"reports of ~{per_report} bytes, the four stages' real counters, 1,000 processes"],
    )
    return rate, per_report


# --- Output -------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def print_results(
    extractor: Rate,
    reference: float | None,
    plane: list[Rate],
    control: tuple[list[ControlResult], Rate, int] | None,
) -> None:
    print(
        "| measure | rate (wall) | CPU ms per item | extractors fed (wall) | extractors fed (CPU) |"
    )
    print("|---|---:|---:|---:|---:|")
    print(
        f"| {extractor.name} | {fmt(extractor.per_second)} docs/s "
        f"({fmt(1 / extractor.cpu_per_item)}/s on a core of its own) | "
        f"{extractor.cpu_per_item * 1000:.2f} | 1 | 1 |"
    )
    for rate in plane:
        wall, cpu = rate.fed(extractor)
        print(
            f"| {rate.name} | {fmt(rate.per_second)} {rate.unit}s/s | "
            f"{rate.cpu_per_item * 1000:.3f} | {fmt(wall)} | {fmt(cpu)} |"
        )
    print()
    if reference is not None:
        print(
            f"- Cross-check: bench/ceiling.py's NER-only bound in 1 process: "
            f"{reference:.1f} docs/s (the extractor above: {extractor.per_second:.1f})."
        )
    for rate in plane:
        for note in rate.notes:
            print(f"- {rate.name}: {note}.")
    for scope in ("frontend host", "mesh"):
        ones = [r for r in plane if r.scope == scope]
        if ones:
            first = min(ones, key=lambda r: r.fed(extractor)[1])
            wall, cpu = first.fed(extractor)
            print(
                f"- First to saturate of those one per {scope}: **{first.name}**, at about "
                f"{fmt(cpu)} extractors by CPU ({fmt(wall)} by wall rate)."
            )
    if control is None:
        return
    results, flood, per_report = control
    print()
    print(
        "| simulated processes | stop-writes ms (median, max) | resume ms (median, max) | "
        "status ms | status reply bytes | control CPU, heartbeats only | "
        "CPU us per heartbeat |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        beat = "too little to resolve" if r.heartbeat_us is None else f"{r.heartbeat_us:.0f}"
        print(
            f"| {r.fleet:,} | {statistics.median(r.stop_ms):.1f}, {max(r.stop_ms):.1f} | "
            f"{statistics.median(r.resume_ms):.1f}, {max(r.resume_ms):.1f} | "
            f"{r.status_ms:.1f} | {r.status_bytes:,} | {r.idle_cpu:.1%} of a core | "
            f"{beat} |"
        )
    print()
    if results:
        print(
            f"- Control alone, no process reporting: {results[0].base_cpu:.1%} of a core "
            "(its 100 ms poll and the state broadcast every second); the last column is "
            "what each heartbeat adds."
        )
    print(
        f"- Flooded, control absorbs {fmt(flood.per_second)} reports/s (wall; "
        f"{flood.cpu_per_item * 1e6:.1f} us of CPU each, batched: "
        f"~{fmt(1 / flood.cpu_per_item)}/s on a core of its own). Each process reports once "
        f"per {REPORT_SECONDS:.0f} s; heartbeats that come one by one cost more each (the "
        "table's last column), and that is the rate to divide a core by."
    )
    if results and results[-1].fleet:
        per_process = results[-1].status_bytes / results[-1].fleet
        print(
            f"- A status reply lists every live process (~{per_process:.0f} bytes each here, "
            f"~{per_report} with real counters); control frames are capped at "
            f"{CONTROL_BYTES:,} bytes (CONTROL_BYTES), so status and command replies fail past "
            f"~{CONTROL_BYTES // per_report:,} processes."
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractor-passes", type=int, default=2, help="over the corpus")
    parser.add_argument("--ledger-articles", type=int, default=50_000)
    parser.add_argument("--ack-batch", type=int, default=256, help="articles per Ack at most")
    parser.add_argument("--inlet-frames", type=int, default=200_000)
    parser.add_argument("--sqlite-articles", type=int, default=30_000)
    parser.add_argument("--firestore-articles", type=int, default=6_000)
    parser.add_argument("--publications", type=int, default=10)
    parser.add_argument("--fleets", default="10,100,1000", help="simulated processes, per run")
    parser.add_argument("--rounds", type=int, default=5, help="stop-writes/resume per fleet")
    parser.add_argument("--reports", type=int, default=100_000, help="reports in the flood")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated: ceiling, ledger, inlet, savers, firestore, control",
    )
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    load = os.getloadavg()[0]
    began = time.perf_counter()
    texts = lee_articles()
    root = Path(tempfile.mkdtemp(prefix="bench-single-"))  # short: ipc paths are limited
    try:
        say("one extractor")
        extractor, per_text = one_extractor(texts, args.extractor_passes)
        reference = None
        if "ceiling" not in skip:
            say("cross-check: bench/ceiling.py, 1 process")
            reference = len(texts) / ceiling(texts, 1)
        plane: list[Rate] = []
        samples: dict[str, dict[str, float]] = {
            "frontend": {},
            "extractor": {"extracted": 0, "failed": 0, "batches": 0},
            "saver": {"committed": 0, "duplicates": 0, "commits": 0, "poison": 0},
        }
        if "ledger" not in skip:
            say(f"the ledger alone: {args.ledger_articles:,} articles")
            for curve in (False, True):
                rate, samples["ledger"] = ledger_alone(
                    texts, args.ledger_articles, args.ack_batch, root, curve
                )
                plane.append(rate)
        if "inlet" not in skip:
            say(f"the saver inlet alone: {args.inlet_frames:,} frames")
            extractions = replicate(per_text, 3000, args.publications)
            for curve in (False, True):
                plane.append(inlet_alone(extractions, args.inlet_frames, root, curve))
        if "savers" not in skip:
            say("one saver per store")
            plane += one_saver(
                per_text,
                args.sqlite_articles,
                args.firestore_articles,
                args.publications,
                load_settings({}).flush_max_articles,
                root,
                "firestore" not in skip,
            )
        control = None
        if "control" not in skip:
            fleets = [int(n) for n in args.fleets.split(",") if n.strip()]
            control = control_alone(fleets, args.rounds, args.reports, samples, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"`python -m bench.singletons`; {os.cpu_count()} cores (nproc "
        f"{len(os.sched_getaffinity(0))}), shared; load average {load:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; {time.perf_counter() - began:.0f} s in all.\n"
    )
    print(
        "Wall rates are noisy: the 2 cores are shared with other work, and this bench's own "
        "stand-ins (the ledger's peer, the inlet's producer and saver) run beside the process "
        "measured. CPU per item (psutil, user + system of that process alone) is the steadier "
        "figure. 'Extractors fed' counts extractors on a core each (1 / an extractor's CPU "
        "per doc): '(wall)' = the stage's wall rate x an extractor's CPU per doc; '(CPU)' = "
        "an extractor's CPU per doc / the stage's CPU per article, it too on a core of its "
        "own.\n"
    )
    print_results(extractor, reference, plane, control)
    return 0


if __name__ == "__main__":
    sys.exit(main())
