"""The README's first command: `ingest up` daemonises the mesh; `ingest down` ends it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from services.control import mesh
from tests.e2e.conftest import isolated_settings


def test_up_prints_how_to_use_it_and_down_leaves_nothing(tmp_path: Path):
    settings = isolated_settings(tmp_path)
    env = {**os.environ, **settings.to_environ()}
    ingest = str(Path(sys.executable).with_name("ingest"))
    run = lambda *args: subprocess.run(  # noqa: E731
        [ingest, *args], env=env, capture_output=True, text=True, timeout=300
    )
    up = run("up", "--extractors", "1", "--savers", "2")
    try:
        assert up.returncode == 0, up.stderr
        url = f"http://127.0.0.1:{settings.http_port}"
        assert url in up.stdout and "curl -s -X POST" in up.stdout
        key = settings.api_key_path.read_text().strip()
        # The key file's path, never the key: this output ends up in logs and tickets.
        assert key not in up.stdout and str(settings.api_key_path) in up.stdout
        (curl,) = [line for line in up.stdout.splitlines() if "curl -s -X POST" in line]
        posted = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
        assert json.loads(posted.stdout)["accepted"] == 1  # the example works as printed
        assert oct(settings.api_key_path.stat().st_mode & 0o777) == "0o600"
        again = run("up")
        assert again.returncode == 1 and "already running" in again.stderr
        answer = httpx.post(
            f"{url}/articles",
            json={"publication": "Up", "content": "Angela Merkel met Emmanuel Macron in Paris."},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 202
        pids = {
            pid
            for stage in mesh.STAGES
            for pid in mesh.circus(settings, "list", name=stage)["pids"]
        }
        pids |= {c.pid for pid in pids for c in psutil.Process(pid).children(recursive=True)}
        assert len(pids) >= 9  # control, gunicorn + 2 workers, ledger, extractor, inlet, 2 savers
        counts = mesh.process_counts(settings)
        assert (counts["extractor"], counts["saver"]) == (1, 2)  # the options, not the config
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert "every accepted article is committed" in down.stdout
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == []
    assert not mesh.is_running(settings)
    top = run("top", "Up")
    assert top.returncode == 0 and "Angela Merkel" in top.stdout


def test_foreground_up_stops_gracefully_on_sigterm_and_keeps_the_state(tmp_path: Path):
    """How a container runs its share: SIGTERM to `ingest up --foreground` (PID 1's child in
    a pod) stops every process through Circus and returns 0; with --keep-state, a restart
    leaves a stop-writes in force (Kubernetes restarts pods on its own)."""
    settings = isolated_settings(tmp_path)
    env = {**os.environ, **settings.to_environ()}
    ingest = str(Path(sys.executable).with_name("ingest"))
    url = f"http://127.0.0.1:{settings.http_port}"

    def start(*options: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [ingest, "up", "--foreground", "--extractors", "1", *options],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while not mesh.is_running(settings) or not _healthy(url):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the mesh did not come up"
            time.sleep(0.5)
        return process

    def stop(process: subprocess.Popen) -> set[int]:
        pids = {p for s in mesh.STAGES for p in mesh.circus(settings, "list", name=s)["pids"]}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
        return {p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"}

    first = start()
    # `up` resumes writes once the frontend answers: let it, or its resume could land
    # after the stop-writes below.
    deadline = time.monotonic() + 60
    while mesh.control(settings, "status").state.seq < 1:
        assert time.monotonic() < deadline, "ingest up never resumed writes"
        time.sleep(0.2)
    mesh.set_state(settings, "stop-writes")
    assert stop(first) == set()  # every process stopped, and circusd said it went well
    second = start("--keep-state")
    try:
        deadline = time.monotonic() + 30
        while mesh.control(settings, "status").state.name != "stopped":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        time.sleep(2)  # long enough for a resume to have happened, had `up` sent one
        assert mesh.control(settings, "status").state.name == "stopped"
    finally:
        assert stop(second) == set()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
