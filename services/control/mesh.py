"""Starting, reaching and stopping the mesh under Circus, for the CLI and the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from circus.client import CircusClient

from common.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CIRCUS_INI = ROOT / "circus.ini"
STAGES = ("frontend", "ledger", "extractor", "saver-inlet", "saver")


class MeshError(RuntimeError):
    """Something the operator must hear about; the CLI prints it and exits non-zero."""


def environ(settings: Settings) -> dict[str, str]:
    """The environment circus.ini reads: the settings, plus where Python and the code are."""
    env = dict(os.environ)
    env.update(settings.to_environ())
    env["MESH_PYTHON"] = sys.executable
    env["MESH_ROOT"] = str(ROOT)
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
