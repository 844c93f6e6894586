"""Starting, reaching and stopping the mesh under Circus, for the CLI and the tests."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from circus.client import CircusClient

from common.config import Settings
from common.control import ControlUnavailable, Reply, Report, State, ask
from common.security import ensure_private_dir
from common.sockets import nobody_listens

ROOT = Path(__file__).resolve().parents[2]
CIRCUS_INI = ROOT / "circus.ini"
STAGES = ("control", "frontend", "ledger", "extractor", "saver-inlet", "saver")
EMULATOR = "firestore-emulator"
SCALABLE = ("frontend", "extractor", "saver")


class MeshError(RuntimeError):
    """Something the operator must hear about; the CLI prints it and exits non-zero."""


def environ(settings: Settings) -> dict[str, str]:
    """The environment circus.ini reads: the settings, plus where Python and the code are."""
    env = dict(os.environ)
    env.update(settings.to_environ())
    env["MESH_PYTHON"] = sys.executable
    env["MESH_ROOT"] = str(ROOT)
    # prometheus-client reads this itself, at import: every process writes its samples
    # there and the frontend's /metrics aggregates them.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(settings.metrics_path)
    # How many processes of each stage circus.ini starts on this host: 0 for a stage this
    # host does not run (a fleet's host runs only its share, `stages`).
    for stage, count in process_plan(settings).items():
        env[f"MESH_{stage.upper().replace('-', '_')}_PROCESSES"] = str(count)
    # Where Circus binds the HTTP socket: this host's own address when bind_address says so
    # (Kubernetes: http_host may name a Service); loopback and any port on a host without a
    # frontend, since Circus binds every socket of circus.ini whatever runs.
    if settings.runs("frontend"):
        env["MESH_HTTP_BIND_HOST"] = http_bind_host(settings)
        env["MESH_HTTP_BIND_PORT"] = str(settings.http_port)
    else:
        env["MESH_HTTP_BIND_HOST"], env["MESH_HTTP_BIND_PORT"] = "127.0.0.1", "0"
    env["MESH_FIRESTORE_EMULATOR"] = "true" if settings.run_firestore_emulator else "false"
    env["MESH_HOST_METRICS"] = "true" if settings.serves_host_metrics else "false"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # Plain `circusctl` finds this mesh's circusd (its endpoint is an ipc socket in the run
    # folder, not the usual tcp://127.0.0.1:5555 every local user could reach).
    env["CIRCUSCTL_ENDPOINT"] = settings.circus_endpoint
    return env


def http_bind_host(settings: Settings) -> str:
    """The address Circus binds HTTP on: `http_host` when it is an address (127.0.0.1, or
    0.0.0.0 in a pod, so probes, Services and `kubectl port-forward` all reach it), else
    `bind_address` (`http_host` names this host, e.g. a topology's DNS name, which cannot be
    bound)."""
    try:
        ipaddress.ip_address(settings.http_host)
    except ValueError:
        return settings.bind_address or settings.http_host
    return settings.http_host


def process_plan(settings: Settings) -> dict[str, int]:
    """Processes per stage at start on this host (0: the stage runs elsewhere)."""
    sizes = {
        "control": 1,
        "frontend": settings.web_workers,
        "ledger": 1,
        "extractor": settings.extractors,
        "saver-inlet": 1,
        "saver": settings.savers,
    }
    return {stage: (count if settings.runs(stage) else 0) for stage, count in sizes.items()}


def prepare(settings: Settings) -> str:
    """Create the data folders, private to this user, and the API key; return the key.

    Every file the mesh creates is this user's only (umask 077, inherited by circusd and
    every process it starts): the journal and the store hold article text, the run folder
    the ipc sockets, the key folder the CURVE keys.
    """
    os.umask(0o077)
    ensure_private_dir(settings.data_path)
    ensure_private_dir(settings.data_path / "logs")
    ensure_private_dir(settings.run_path)
    own_key = settings.key_path / f"{settings.key_name}.key_secret"
    if settings.tcp_endpoints() and not own_key.exists():
        raise MeshError(
            f"tcp:// endpoints are CURVE-authenticated and need keys in {settings.key_path}: "
            "run `ingest keys` first (docs/trust.md)"
        )
    return settings.ensure_api_key()


def circusd_command(*, daemon: bool) -> list[str]:
    command = [str(Path(sys.executable).with_name("circusd")), str(CIRCUS_INI)]
    return [*command[:1], "--daemon", *command[1:]] if daemon else command


def start(settings: Settings, *, daemon: bool = True) -> subprocess.Popen | None:
    """Start circusd on circus.ini; a daemon returns None once it has forked."""
    if is_running(settings):
        raise MeshError(f"a mesh is already running at {settings.circus_endpoint}")
    # A fresh metrics folder: samples of a previous run would add to this one's counters.
    shutil.rmtree(settings.metrics_path, ignore_errors=True)
    settings.metrics_path.mkdir(parents=True)
    command = circusd_command(daemon=daemon)
    if daemon:
        subprocess.run(command, env=environ(settings), cwd=ROOT, check=True)
        return None
    return subprocess.Popen(command, env=environ(settings), cwd=ROOT)


def base_url(settings: Settings) -> str:
    return f"http://{settings.http_host}:{settings.http_port}"


def wait_until_serving(settings: Settings, timeout: float = 120.0) -> None:
    """Wait until the frontend answers /health and every stage has its processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(base_url(settings) + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise MeshError(f"the frontend did not answer at {base_url(settings)} within {timeout:.0f}s")


def wait_for_watchers(settings: Settings, timeout: float = 120.0) -> None:
    """Wait until every stage this host runs has its processes (a host without a frontend
    has no HTTP to wait for)."""
    plan = {stage: n for stage, n in process_plan(settings).items() if n > 0}
    deadline = time.monotonic() + timeout
    missing = plan
    while time.monotonic() < deadline:
        try:
            running = {s: len(circus(settings, "list", name=s)["pids"]) for s in plan}
        except MeshError:
            running = {}
        missing = {s: n for s, n in plan.items() if running.get(s, 0) < n}
        if not missing:
            return
        time.sleep(0.2)
    raise MeshError(
        f"these stages did not start within {timeout:.0f}s: "
        + ", ".join(f"{s} (wanted {n})" for s, n in missing.items())
    )


def wait_for_emulator(settings: Settings, timeout: float = 120.0) -> None:
    """Wait until the Firestore emulator the mesh runs answers "Ok"."""
    url = f"http://{settings.firestore_emulator_host}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).text.strip() == "Ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise MeshError(f"the Firestore emulator did not answer at {url} within {timeout:.0f}s")


def circus(settings: Settings, command: str, timeout: float = 30.0, **properties) -> dict:
    """One Circus command, e.g. circus(s, "incr", name="extractor", nb=1)."""
    if nobody_listens(settings.circus_endpoint):
        raise MeshError(f"the mesh is not running (nothing at {settings.circus_endpoint})")
    client = CircusClient(endpoint=settings.circus_endpoint, timeout=timeout)
    try:
        answer = client.call({"command": command, "properties": properties})
    except Exception as exc:  # CallError: circusd not there or not answering
        raise MeshError(
            f"the mesh is not running (no answer from Circus at {settings.circus_endpoint})"
        ) from exc
    finally:
        client.stop()
    if answer.get("status") != "ok":
        raise MeshError(f"circus {command}: {answer.get('reason', answer)}")
    return answer


def is_running(settings: Settings) -> bool:
    try:
        circus(settings, "status", timeout=2.0)
    except MeshError:
        return False
    return True


def process_counts(settings: Settings) -> dict[str, int]:
    return {name: circus(settings, "numprocesses", name=name)["numprocesses"] for name in STAGES}


def stop(settings: Settings, timeout: float = 90.0) -> None:
    """Stop every watcher (each finishes or hands back its work) and quit circusd."""
    circus(settings, "quit", timeout=timeout, waiting=True)


def halt_fleet(settings: Settings, timeout: float = 120.0) -> str:
    """Stop every host of a fleet: control tells each other host's processes to stop their
    own circusd, waits until each confirmed and fell silent, stops its own host's watchers,
    answers, then stops its own circusd. Returns what stopped; MeshError if a host did not
    confirm within `timeout`."""
    # The control host's own watchers stop after the others (savers finish their flush,
    # up to their graceful timeout): room for that beyond `timeout`.
    reply = control(settings, "down", wait=timeout, timeout=timeout + 120.0)
    if not reply.ok:
        raise MeshError(f"down: {reply.detail}")
    return f"Hosts {reply.detail}"


def set_state(settings: Settings, command: str, wait: float = 5.0) -> Reply:
    """stop-writes | resume | drain; returns once every live frontend process applied it."""
    reply = control(settings, command, wait=wait)
    if not reply.ok:
        raise MeshError(f"{command}: {reply.detail}")
    return reply


def drain(
    settings: Settings,
    since_seq: int | None,
    *,
    timeout: float,
    progress: Callable[[int, float], None] | None = None,
) -> int:
    """Wait until every ledger's journal is empty. Returns 0 when drained, else the number
    of articles left at the timeout (-1: no ledger reported its journal at all).

    `since_seq` is the seq of the stop-writes or drain state: a ledger's zero counts only if
    it was read in one snapshot with its journal's gate at that seq or later. The gate was
    closed then, so no article can join the journal afterwards: drained means drained.
    With `since_seq=None` (writes go on; e.g. `ingest load --wait` waiting for what it
    posted), a zero counts only from a look the ledger took after this call began: the call
    first asks control for a new look (State.look), and a ledger reports with each look the
    last one it had heard before it. No clock is compared, so hosts need not agree on the
    time, and no count of reports is trusted either (a ledger's reports may lag its looks).
    """
    started = time.monotonic()
    left, last_progress = -1, 0.0
    asked = control(settings, "look").state if since_seq is None else None
    while time.monotonic() - started < timeout:
        reply = control(settings, "status")
        if asked is not None and reply.state.boot != asked.boot:
            asked = control(settings, "look").state  # control restarted: ask its successor
        ledgers = [r for r in reply.reports if r.stage == "ledger"]
        if ledgers:
            left = sum(int(r.counters.get("backlog", 0)) for r in ledgers)
            if asked is None:
                settled = all(r.counters.get("journal_gate_seq", -1) >= since_seq for r in ledgers)
            else:
                settled = all(_looked_after(r, asked) for r in ledgers)
            if settled and left == 0:
                return 0
        if progress and left > 0 and time.monotonic() - last_progress >= 1.0:
            last_progress = time.monotonic()
            progress(left, time.monotonic() - started)
        time.sleep(0.25)
    return left if left != 0 else 1  # a zero not yet confirmed by a settled look


def _looked_after(report: Report, asked: State) -> bool:
    """Whether the ledger's last reported look followed the look request `asked`."""
    counters = report.counters
    return counters.get("look_boot") == asked.boot and counters.get("look", -1) >= asked.look


def scale(settings: Settings, stage: str, count: int) -> tuple[int, int]:
    """Set a stage's number of Circus processes, as `circusctl incr/decr` does; a frontend
    process is one gunicorn with one worker, so every stage counts the same way."""
    if stage not in SCALABLE:
        raise MeshError(f"unknown stage {stage!r}: choose one of {', '.join(SCALABLE)}")
    if count < 1:
        raise MeshError(f"a stage needs at least 1 process, not {count}")
    before = circus(settings, "numprocesses", name=stage)["numprocesses"]
    if count > before:
        circus(settings, "incr", name=stage, nb=count - before, waiting=True)
    elif count < before:
        circus(settings, "decr", name=stage, nb=before - count, waiting=True)
    return before, circus(settings, "numprocesses", name=stage)["numprocesses"]


def control(
    settings: Settings, name: str, wait: float = 5.0, timeout: float | None = None
) -> Reply:
    """Send one command to the control server and return its reply (within `timeout`,
    default wait + 5 s)."""
    if nobody_listens(settings.control_command_endpoint):
        # Say so at once rather than wait out the command's timeout.
        raise MeshError(f"the mesh is not running (nothing at {settings.control_command_endpoint})")
    try:
        return ask(settings, name, wait=wait, timeout=timeout)
    except ControlUnavailable as exc:
        raise MeshError(f"the mesh is not running ({exc})") from exc
