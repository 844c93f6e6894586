"""Starting, reaching and stopping the mesh under Circus, for the CLI and the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
from circus.client import CircusClient

from common.config import Settings
from common.control import ControlUnavailable, Reply, ask

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
    env["MESH_FIRESTORE_EMULATOR"] = "true" if settings.run_firestore_emulator else "false"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def prepare(settings: Settings) -> str:
    """Create the data and log folders and the API key; return the key."""
    (settings.data_path / "logs").mkdir(parents=True, exist_ok=True)
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


def set_state(settings: Settings, command: str, wait: float = 5.0) -> Reply:
    """stop-writes | resume | drain; returns once every live frontend process applied it."""
    reply = control(settings, command, wait=wait)
    if not reply.ok:
        raise MeshError(f"{command}: {reply.detail}")
    return reply


def drain(
    settings: Settings,
    *,
    timeout: float,
    progress: Callable[[int, float], None] | None = None,
) -> int:
    """Wait until every ledger's journal is empty. Returns 0 when drained, else the number
    of articles left at the timeout (-1: no ledger reported its journal at all).

    Only a ledger report whose journal look is newer than the start of the wait counts, so
    an article accepted just before writes stopped is never missed.
    """
    started_wall, started = time.time(), time.monotonic()
    left, last_progress = -1, 0.0
    while time.monotonic() - started < timeout:
        ledgers = [r for r in control(settings, "status").reports if r.stage == "ledger"]
        if ledgers:
            left = sum(int(r.counters.get("backlog", 0)) for r in ledgers)
            fresh = all(r.counters.get("journal_checked_at", 0) > started_wall for r in ledgers)
            if fresh and left == 0:
                return 0
        if progress and left > 0 and time.monotonic() - last_progress >= 1.0:
            last_progress = time.monotonic()
            progress(left, time.monotonic() - started)
        time.sleep(0.25)
    return left if left != 0 else 1  # a zero not yet confirmed by a fresh look


def scale(settings: Settings, stage: str, count: int) -> tuple[int, int]:
    """Set a stage's process count; the frontend's is its number of gunicorn workers."""
    if stage not in SCALABLE:
        raise MeshError(f"unknown stage {stage!r}: choose one of {', '.join(SCALABLE)}")
    if count < 1:
        raise MeshError(f"a stage needs at least 1 process, not {count}")
    if stage == "frontend":
        return _scale_gunicorn(settings, count)
    before = circus(settings, "numprocesses", name=stage)["numprocesses"]
    if count > before:
        circus(settings, "incr", name=stage, nb=count - before, waiting=True)
    elif count < before:
        circus(settings, "decr", name=stage, nb=before - count, waiting=True)
    return before, circus(settings, "numprocesses", name=stage)["numprocesses"]


def _scale_gunicorn(settings: Settings, count: int) -> tuple[int, int]:
    # gunicorn adds a worker on TTIN and removes one on TTOU.
    (master,) = circus(settings, "list", name="frontend")["pids"]
    workers = lambda: len(psutil.Process(master).children())  # noqa: E731
    before = workers()
    signal_name = "TTIN" if count > before else "TTOU"
    for _ in range(abs(count - before)):
        circus(settings, "signal", name="frontend", signum=signal_name)
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while workers() != count and time.monotonic() < deadline:
        time.sleep(0.2)
    return before, workers()


def control(settings: Settings, name: str, wait: float = 5.0) -> Reply:
    """Send one command to the control server and return its reply."""
    try:
        return ask(settings, name, wait=wait)
    except ControlUnavailable as exc:
        raise MeshError(f"the mesh is not running ({exc})") from exc
