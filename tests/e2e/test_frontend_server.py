"""The frontend server on the real mesh: slow and idle clients, protocol errors in JSON,
and the frontend scaled like any other stage (circusctl incr/decr, `ingest scale`)."""

from __future__ import annotations

import json
import random
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from services.control import mesh
from tests.e2e.conftest import RunningMesh, ingest, start_mesh, stop_mesh

# Short deadlines, so that a slow client's cut-off comes within the test's time.
HEADER_DEADLINE = 5.0
BODY_DEADLINE = 5.0
MARGIN = 2.0  # scheduling on a busy 2-core machine, and the 50 ms polling below


@pytest.fixture(scope="module")
def frontend_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    running = start_mesh(
        tmp_path_factory.mktemp("frontend"),
        http_header_timeout=HEADER_DEADLINE,
        http_body_timeout=BODY_DEADLINE,
    )
    yield running
    stop_mesh(running)


# --- slow clients ------------------------------------------------------------------------


@dataclass
class SlowClient:
    """One raw connection that sends `trickle` one byte every 0.5-1 s, after `burst` at once
    (an idle client sends nothing at all)."""

    kind: str
    deadline: float  # when the server should cut it, from when it connected
    burst: bytes = b""
    trickle: bytes = b""
    sock: socket.socket | None = None
    opened_at: float = 0.0
    next_send: float = 0.0
    ended_after: float | None = None  # seconds from connect to the server's close (or 408)
    outcome: str = ""
    received: bytes = field(default=b"", repr=False)


def slow_clients(url: httpx.URL, key: str, rng: random.Random) -> list[SlowClient]:
    """12 that trickle their request line and headers, 4 that connect and send nothing, and
    4 that send their headers at once and trickle the body: 20 in all."""
    post = (
        f"POST /articles HTTP/1.1\r\nHost: {url.host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    ).encode()
    health = f"GET /health HTTP/1.1\r\nHost: {url.host}\r\nX-Padding: {'x' * 80}\r\n\r\n".encode()
    clients = [
        SlowClient("headers", HEADER_DEADLINE, trickle=rng.choice([post, health]))
        for _ in range(12)
    ]
    clients += [SlowClient("idle", HEADER_DEADLINE) for _ in range(4)]
    body = json.dumps({"publication": "Slow", "content": "y" * 400})[:400].encode()
    clients += [SlowClient("body", BODY_DEADLINE, burst=post, trickle=body) for _ in range(4)]
    return clients


def drive(clients: list[SlowClient], port: int, until: float, rng: random.Random) -> None:
    """Connect every client, then trickle and watch for the server's close until each is
    cut off or `until` (monotonic) passes. One thread, non-blocking sockets."""
    for client in clients:
        client.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sock.setblocking(False)
        client.opened_at = time.monotonic()
        client.next_send = client.opened_at
        if client.burst:
            client.sock.sendall(client.burst)
    while time.monotonic() < until:
        live = [c for c in clients if c.ended_after is None]
        if not live:
            return
        readable, _, _ = select.select([c.sock for c in live], [], [], 0.05)
        now = time.monotonic()
        for client in live:
            if client.sock in readable:
                try:
                    data = client.sock.recv(4096)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                client.received += data
                if not data or client.received.startswith(b"HTTP/1.1 408"):
                    client.ended_after = now - client.opened_at
                    client.outcome = "408" if data else "closed"
                    continue
            if client.trickle and now >= client.next_send:
                try:
                    client.sock.send(client.trickle[:1])
                except (ConnectionResetError, BrokenPipeError):
                    client.ended_after, client.outcome = now - client.opened_at, "closed"
                    continue
                client.trickle = client.trickle[1:]
                client.next_send = now + rng.uniform(0.5, 1.0)


def test_slow_and_idle_clients_starve_nothing_and_are_cut_at_their_deadline(
    frontend_mesh: RunningMesh, corpus: list[str]
):
    rng = random.Random(4)
    clients = slow_clients(frontend_mesh.http.base_url, frontend_mesh.key, rng)
    until = time.monotonic() + max(HEADER_DEADLINE, BODY_DEADLINE) + MARGIN + 5.0
    driver = threading.Thread(
        target=drive, args=(clients, frontend_mesh.settings.http_port, until, rng)
    )
    latencies: list[float] = []
    held: list[int] = []  # slow clients still connected as each request started
    driver.start()
    try:
        time.sleep(0.5)  # every slow client connected and sending
        headers = {"Authorization": f"Bearer {frontend_mesh.key}"}
        # A new connection per request: the accept path is what slow clients used to block.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=frontend_mesh.url, timeout=10.0, limits=no_reuse) as http:
            stop_by = time.monotonic() + 60
            for n in range(200):
                if time.monotonic() > stop_by:
                    break
                held.append(sum(1 for c in clients if c.ended_after is None))
                started = time.perf_counter()
                if n % 2:
                    answer = http.get("/health")
                    assert answer.status_code == 200
                else:
                    article = {"publication": "Fast", "content": corpus[n % len(corpus)]}
                    answer = http.post("/articles", json=[article | {"id": f"fast-{n}"}],
                                       headers=headers)  # fmt: skip
                    assert answer.status_code == 202, answer.text
                latencies.append(time.perf_counter() - started)
        driver.join(timeout=until - time.monotonic() + 5)
    finally:
        driver.join(timeout=30)
        for client in clients:
            if client.sock is not None:
                client.sock.close()

    assert len(latencies) == 200
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 < 0.100, f"p99 {p99 * 1000:.0f} ms with 20 slow clients"
    # The requests really ran alongside the slow clients.
    assert sum(1 for h in held if h == len(clients)) >= 100, held
    for client in clients:
        assert client.outcome in ("closed", "408"), (client.kind, client.received[:80])
        assert client.ended_after is not None
        # Cut by a deadline from the connection (or from the headers, for a slow body),
        # though each sent a byte at least every second: not an idle timeout per read.
        assert client.deadline - 0.5 <= client.ended_after <= client.deadline + MARGIN, (
            client.kind,
            client.ended_after,
        )


# --- protocol errors ---------------------------------------------------------------------


def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("name", "request_bytes", "status"),
    [
        ("uri", b"GET /health?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ("header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (
            "header block",
            b"GET /health HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: " % i + b"c" * 8000 + b"\r\n" for i in range(9))
            + b"\r\n",
            431,
        ),
        ("request line", b"NOT HTTP AT ALL\r\n\r\n", 400),
    ],
)
def test_protocol_errors_answer_the_api_json(
    frontend_mesh: RunningMesh, name: str, request_bytes: bytes, status: int
):
    code, headers, body = raw_exchange(frontend_mesh.settings.http_port, request_bytes)
    assert code == status, body[:200]
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)
    assert set(error) == {"title", "description"}, error
    assert str(status) in error["title"]


# --- scaling the frontend ----------------------------------------------------------------


def circusctl(running: RunningMesh, *args: str) -> str:
    command = [str(Path(sys.executable).with_name("circusctl")), "--endpoint"]
    command += [running.settings.circus_endpoint, *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def frontend_pids(running: RunningMesh) -> set[int]:
    return set(mesh.circus(running.settings, "list", name="frontend")["pids"])


def frontend_workers(running: RunningMesh) -> list[psutil.Process]:
    """The gunicorn worker of each frontend process (the children of its master)."""
    return [child for pid in frontend_pids(running) for child in psutil.Process(pid).children()]


def status_counts(running: RunningMesh) -> dict[str, object]:
    """The frontend count on every surface: Circus, circusctl, `ingest status`, GET /status."""
    status = ingest(running, "status", timeout=60)
    line = re.search(r"^\s+frontend\s+(.*)$", status.stdout, re.MULTILINE)
    return {
        "circus": mesh.circus(running.settings, "numprocesses", name="frontend")["numprocesses"],
        "circusctl": int(circusctl(running, "numprocesses", "frontend").strip()),
        "ingest status": line.group(1).strip() if line else status.stdout + status.stderr,
        "GET /status": running.http.get("/status").json()["processes"].get("frontend"),
    }


def wait_until_every_surface_says(running: RunningMesh, count: int, timeout: float = 30.0):
    # Reports lag a start (a worker reports once booted) or a stop (3 s) by a few seconds.
    want = {"circus": count, "circusctl": count, "ingest status": str(count), "GET /status": count}
    deadline = time.monotonic() + timeout
    while (seen := status_counts(running)) != want and time.monotonic() < deadline:
        time.sleep(0.5)
    assert seen == want


def serves(running: RunningMesh, n: int = 10) -> None:
    """n POSTs answered 202 and n GET /health 200, on fresh connections (any process may
    take each). A worker just booted answers 503 until it hears the pipeline state: retried."""
    with httpx.Client(
        base_url=running.url, timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        for i in range(n):
            deadline = time.monotonic() + 10
            while True:
                answer = http.post(
                    "/articles",
                    json=[{"publication": "Scaled", "content": f"Paris, item {i}."}],
                    headers={"Authorization": f"Bearer {running.key}"},
                )
                if answer.status_code != 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert answer.status_code == 202, answer.text
            assert http.get("/health").status_code == 200


def test_circusctl_and_ingest_scale_the_frontend_and_every_status_agrees(
    frontend_mesh: RunningMesh,
):
    running = frontend_mesh
    assert running.settings.web_workers == 2
    wait_until_every_surface_says(running, 2)
    before = frontend_pids(running)

    circusctl(running, "incr", "--waiting", "frontend")
    (new,) = frontend_pids(running) - before
    wait_until_every_surface_says(running, 3)
    serves(running)

    # The new process alone (decr stops the oldest first): it serves.
    circusctl(running, "decr", "--waiting", "frontend", "2")
    assert frontend_pids(running) == {new}
    wait_until_every_surface_says(running, 1)
    serves(running)

    result = ingest(running, "scale", "frontend", "3")
    assert result.returncode == 0, result.stderr
    assert "frontend: 1 -> 3" in result.stdout
    wait_until_every_surface_says(running, 3)
    serves(running)

    result = ingest(running, "scale", "frontend", "2")
    assert result.returncode == 0, result.stderr
    wait_until_every_surface_says(running, 2)
    serves(running)


# --- graceful stop -----------------------------------------------------------------------


def test_a_stopping_frontend_finishes_the_request_it_is_reading(
    frontend_mesh: RunningMesh, corpus: list[str]
):
    running = frontend_mesh
    body = json.dumps({"publication": "Graceful", "content": corpus[1], "id": "graceful-1"})
    head = (
        f"POST /articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {running.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    workers = frontend_workers(running)
    assert len(workers) == running.settings.web_workers
    with socket.create_connection(("127.0.0.1", running.settings.http_port), timeout=30) as sock:
        sock.sendall(head + body.encode()[:100])
        time.sleep(0.5)  # accepted, headers read: a request in progress
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # every worker is stopping now
        sock.sendall(body.encode()[100:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["accepted"] == 1
    # gunicorn's masters boot fresh workers; the frontend serves again.
    deadline = time.monotonic() + 30
    old = {w.pid for w in workers}
    while time.monotonic() < deadline:
        fresh = {w.pid for w in frontend_workers(running)}
        if len(fresh) == len(old) and not fresh & old:
            break
        time.sleep(0.2)
    assert len(fresh) == len(old) and not fresh & old
    serves(running, 3)
