"""Stop-writes and drain are exact, and a dead letter means "could not be processed".

A request whose body is still arriving when writes stop must not be journaled afterwards:
before the journal gate, such a POST got 202 after `ingest stop-writes` returned, and could
land after the drain's last look, so `ingest drain`/`down` reported an empty journal that
was not.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.control import mesh
from services.frontend.journal import Journal
from store import open_store
from tests.e2e.conftest import RunningMesh, assert_exactly_counted, ingest, start_mesh, stop_mesh


class SlowPost:
    """A POST /articles whose body arrives in two parts, on a raw socket."""

    def __init__(self, running: RunningMesh, article: dict) -> None:
        self.body = json.dumps([article]).encode()
        self.sock = socket.create_connection(("127.0.0.1", running.settings.http_port), timeout=60)
        head = (
            "POST /articles HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {running.key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
        )
        self.sock.sendall(head.encode() + self.body[:20])

    def finish(self) -> tuple[int, dict]:
        self.sock.sendall(self.body[20:])
        answer = b""
        while chunk := self.sock.recv(65536):
            answer += chunk
        self.sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)


def journaled_ids(running: RunningMesh) -> set[str]:
    journal = Journal(running.settings.journal_path)
    try:
        return {row.id for row in journal.after(0, 100_000)}
    finally:
        journal.close()


def ingest_in_background(running: RunningMesh, *args: str) -> subprocess.Popen:
    command = [str(Path(sys.executable).with_name("ingest")), *args]
    env = {**os.environ, **running.settings.to_environ()}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def mesh_for_races(tmp_path_factory: pytest.TempPathFactory):
    running = start_mesh(tmp_path_factory.mktemp("races"))
    yield running
    stop_mesh(running)


def test_a_drain_while_writes_go_on_waits_for_a_look_after_its_posts(
    mesh_for_races: RunningMesh, corpus
):
    """`ingest load --wait` drains without stopping writes (mesh.drain(None)). The ledger is
    frozen (SIGSTOP) while articles are posted, so the last report control holds, and the
    first one the ledger sends when it thaws, were taken before the POSTs and say "empty":
    the drain must believe only a look taken after its own request. (Seen before this test:
    `ingest load --wait` and bench/rounds.py saw a drain 0.4 s after posting 1,500 articles.)
    """
    running = mesh_for_races
    running.wait_until_accepting()
    running.wait_drained()
    (ledger_pid,) = mesh.circus(running.settings, "list", name="ledger")["pids"]
    accepted = [
        {"publication": "Frozen ledger", "content": text, "id": f"frozen-{i}"}
        for i, text in enumerate(corpus[100:130])
    ]
    outcome: dict[str, int] = {}

    def drain() -> None:
        outcome["left"] = mesh.drain(running.settings, None, timeout=120)

    waiter = threading.Thread(target=drain)
    os.kill(ledger_pid, signal.SIGSTOP)
    try:
        assert running.post(accepted).status_code == 202
        waiter.start()
        time.sleep(1.5)  # the drain reads control's last report of the ledger: "empty"
    finally:
        os.kill(ledger_pid, signal.SIGCONT)
    waiter.join(timeout=150)
    assert outcome == {"left": 0}
    store = open_store(running.settings)
    try:
        ids = [a["id"] for a in accepted]
        assert store.counted(ids) == set(ids)  # all committed when the drain said so
    finally:
        store.close()


def test_a_body_straddling_stop_writes_is_refused(mesh_for_races: RunningMesh, corpus):
    running = mesh_for_races
    slow = SlowPost(running, {"publication": "Slow", "content": corpus[0], "id": "straddle-1"})
    time.sleep(1.0)  # admitted: the worker is reading the body
    stopped = ingest(running, "stop-writes", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    try:
        status, body = slow.finish()
        assert status == 503, body
        assert "stopped" in body["description"]
        assert "straddle-1" not in journaled_ids(running)
    finally:
        assert ingest(running, "resume").returncode == 0


def test_a_body_straddling_drain_is_refused_and_drain_is_exact(mesh_for_races: RunningMesh, corpus):
    running = mesh_for_races
    slow = SlowPost(running, {"publication": "Slow", "content": corpus[1], "id": "straddle-2"})
    time.sleep(1.0)
    drain = ingest_in_background(running, "drain", "--timeout", "120")
    try:
        time.sleep(3.0)  # the drain has stopped writes and found the journal empty
        status, body = slow.finish()
        assert status == 503, body
        out, err = drain.communicate(timeout=150)
        assert drain.returncode == 0, err
        assert "Drained" in out
        assert journaled_ids(running) == set()
    finally:
        drain.kill()
        assert ingest(running, "resume").returncode == 0


def test_a_body_straddling_down_is_refused_and_down_is_exact(tmp_path, corpus, oracle):
    running = start_mesh(tmp_path)
    try:
        accepted = {
            f"before-{i}": {"publication": "Before", "content": text, "id": f"before-{i}"}
            for i, text in enumerate(corpus[:30])
        }
        assert running.post(list(accepted.values())).status_code == 202
        slow = SlowPost(running, {"publication": "Slow", "content": corpus[2], "id": "late"})
        time.sleep(1.0)
        down = ingest_in_background(running, "down", "--timeout", "180")
        time.sleep(2.0)  # writes are stopped; the drain of the 30 is under way
        status, body = slow.finish()
        assert status == 503, body
        out, err = down.communicate(timeout=240)
        assert down.returncode == 0, err
        assert "every accepted article is committed" in out
        running.process.wait(timeout=60)
        assert journaled_ids(running) == set()
        assert_exactly_counted(running, accepted, oracle)
    finally:
        stop_mesh(running)


def test_a_store_outage_longer_than_every_lease_dead_letters_nothing(tmp_path, corpus, oracle):
    """The default max_attempts (5) with a short lease, and the store down for longer than
    lease x max_attempts x the backoff (the old rule dead-lettered all in flight after
    ~46 leases of stall): nothing is dead-lettered, and all is counted once it is back.
    Lease and outage are shrunk together from the defaults (60 s lease, ~46 min)."""
    lease = 0.5
    running = start_mesh(tmp_path, lease_seconds=lease)
    try:
        articles = {
            f"outage-{i}": {"publication": "Outage", "content": text, "id": f"outage-{i}"}
            for i, text in enumerate(corpus[:40])
        }
        blocker = sqlite3.connect(running.settings.sqlite_store_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the store is down: savers block and retry
        try:
            assert running.post(list(articles.values())).status_code == 202
            time.sleep(50 * lease + 5)  # > 46 leases of stall
            assert dead_letters(running) == 0
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        running.wait_drained(timeout=180)
        assert dead_letters(running) == 0
        assert_exactly_counted(running, articles, oracle)
    finally:
        stop_mesh(running)


def dead_letters(running: RunningMesh) -> int:
    journal = Journal(running.settings.journal_path)
    try:
        return journal.dead_letter_count()
    finally:
        journal.close()
