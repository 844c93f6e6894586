"""The README's first command: `ingest up` daemonises the mesh; `ingest down` ends it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
