"""The real mesh under Circus, on free ports in a temporary folder."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from common.config import Settings, load_settings
from services.control import mesh
from services.frontend.journal import Journal
from store import open_store
from tests.conftest import free_port
from tests.oracle import Oracle, entity_id


class RunningMesh:
    def __init__(self, settings: Settings, process: subprocess.Popen, key: str) -> None:
        self.settings = settings
        self.process = process
        self.key = key
        self.url = mesh.base_url(settings)
        self.http = httpx.Client(base_url=self.url, timeout=30.0)

    def post(self, articles: list[dict], **headers: str) -> httpx.Response:
        return self.http.post(
            "/articles", json=articles, headers={"Authorization": f"Bearer {self.key}", **headers}
        )

    def backlog(self) -> int:
        journal = Journal(self.settings.journal_path)
        try:
            return journal.backlog().articles
        finally:
            journal.close()

    def wait_drained(self, timeout: float = 300.0) -> float:
        """Wait until the journal holds no unacknowledged article; return seconds waited."""
        started = time.monotonic()
        while self.backlog():
            if time.monotonic() - started > timeout:
                pytest.fail(f"journal not drained after {timeout}s: {self.backlog()} left")
            time.sleep(0.2)
        return time.monotonic() - started

    def wait_until_accepting(self, timeout: float = 60.0) -> None:
        """Wait until GET /ready says the frontend accepts writes and the rest is up."""
        deadline = time.monotonic() + timeout
        while self.http.get("/ready").status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after {timeout}s: {self.http.get('/ready').text}")
            time.sleep(0.2)

    def log_lines(self, stage: str) -> list[dict]:
        path = self.settings.data_path / "logs" / f"{stage}.log"
        lines = []
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines


def isolated_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a mesh of its own: its folder (every ZeroMQ and Circus endpoint is an
    ipc socket in its private run folder) and a free HTTP port."""
    return load_settings({}, data_dir=str(data_dir), http_port=free_port(), **overrides)


def start_mesh(data_dir: Path, **overrides: object) -> RunningMesh:
    settings = isolated_settings(data_dir, **overrides)
    key = mesh.prepare(settings)
    process = mesh.start(settings, daemon=False)
    assert process is not None
    try:
        mesh.wait_until_serving(settings, timeout=120)
        mesh.set_state(settings, "resume")  # as `ingest up` does
    except mesh.MeshError:
        stop_mesh(RunningMesh(settings, process, key))
        raise
    return RunningMesh(settings, process, key)


def start_firestore_mesh(emulator, data_dir: Path, **overrides: object) -> RunningMesh:
    """A mesh on the session's Firestore emulator, emptied first."""
    emulator.reset()
    return start_mesh(
        data_dir,
        store="firestore",
        firestore_project=emulator.project,
        firestore_emulator_host=emulator.host,
        **overrides,
    )


def stop_mesh(running: RunningMesh) -> None:
    with contextlib.suppress(mesh.MeshError):
        mesh.stop(running.settings)
    try:
        running.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        # circusd did not stop its watchers: kill them too, or they outlive the test
        # (seen once in CI: a whole mesh left running, its frontend on a loopback port).
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(running.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        running.process.kill()
        running.process.wait()
    running.http.close()


@pytest.fixture(scope="module")
def running_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    running = start_mesh(tmp_path_factory.mktemp("mesh"))
    yield running
    stop_mesh(running)


def ingest(running: RunningMesh, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("ingest")), *args]
    env = {**os.environ, **running.settings.to_environ()}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def mesh_pids(running: RunningMesh) -> set[int]:
    pids = {running.process.pid}
    for stage in mesh.STAGES:
        for pid in mesh.circus(running.settings, "list", name=stage)["pids"]:
            pids.add(pid)
            pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
    return pids


def assert_exactly_counted(
    running: RunningMesh,
    accepted: dict[str, dict],
    oracle: Oracle,
    publications: set[str] | None = None,
) -> None:
    """Journal empty; every accepted id has a marker; counts equal the oracle's (stock spaCy)
    on those texts, for every publication in the store (or only `publications`)."""
    journal = Journal(running.settings.journal_path)
    try:
        assert journal.backlog().articles == 0
    finally:
        journal.close()
    store = open_store(running.settings)
    try:
        ids = sorted(accepted)
        assert store.counted(ids) == set(ids)
        want_articles, want_entities = oracle.counts(accepted.values())
        stored = {p.name: p.articles for p in store.publications(limit=10_000)}
        if publications is not None:
            stored = {name: n for name, n in stored.items() if name in publications}
        assert stored == dict(want_articles)
        for pub, want in want_entities.items():
            page = store.top_entities(pub, limit=100_000)
            assert {entity_id(e.text, e.label): e.count for e in page.entities} == dict(want)
    finally:
        store.close()
