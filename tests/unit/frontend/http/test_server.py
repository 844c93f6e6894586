"""The frontend's HTTP server (services/frontend/http/server.py) on a loopback socket, with a
tiny WSGI app that records what it was given: deadlines, limits, bodies, the connection cap,
the graceful stop, and protocol errors in JSON."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest

from services.frontend.http.server import HEADER_BLOCK_BYTES, Limits, Server

LIMITS = Limits(
    header_timeout=0.6,
    body_timeout=0.6,
    max_body_bytes=1000,
    max_connections=100,
    request_line=4094,
    header_fields=100,
    header_field_size=8190,
)


@dataclass
class RecordingApp:
    """A WSGI app answering JSON with what it read; `environs` keeps each request's."""

    environs: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        self.environs.append(environ | {"body": body})
        if self.delay:
            time.sleep(self.delay)
        if int(environ.get("CONTENT_LENGTH") or 0) > LIMITS.max_body_bytes:
            start_response("413 Content Too Large", [("Content-Type", "application/json")])
            return [b'{"title": "Body too large", "description": "over"}']
        answer = json.dumps({"read": len(body)}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [answer]


@dataclass
class Running:
    port: int
    server: Server
    loop: asyncio.AbstractEventLoop

    def call(self, function: Any) -> None:
        """Run `function` on the server's loop (it is not thread-safe) and wait for it."""
        done = threading.Event()

        def run() -> None:
            function()
            done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(5)


@contextmanager
def serving(app: Any, limits: Limits = LIMITS) -> Iterator[Running]:
    listener = socket.create_server(("127.0.0.1", 0))
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        server = Server(app, limits)
        server.listen([listener])
        holder["stop"] = asyncio.Event()
        holder.update(server=server, loop=asyncio.get_running_loop())
        ready.set()
        await holder["stop"].wait()
        await server.close_all()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield Running(listener.getsockname()[1], holder["server"], holder["loop"])
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(5)
        listener.close()


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes; everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def parsed(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def closed_after(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closes `sock` (None: still open after `limit`)."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass  # closed while our bytes were still arriving: a reset, still a close
    return time.monotonic() - started


def test_a_request_reaches_the_app_as_gunicorn_would_give_it():
    app = RecordingApp()
    with serving(app) as running:
        answer = httpx.post(
            f"http://127.0.0.1:{running.port}/a%20b/c?x=1&y=2",
            content=b"hello",
            headers={"access_token": "k", "X-Two": "1"},
        )
    assert answer.status_code == 200 and answer.json() == {"read": 5}
    assert answer.headers["date"]
    environ = app.environs[0]
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/a b/c" and environ["QUERY_STRING"] == "x=1&y=2"
    assert environ["RAW_URI"] == "/a%20b/c?x=1&y=2"
    assert environ["CONTENT_LENGTH"] == "5" and environ["body"] == b"hello"
    assert environ["HTTP_ACCESS_TOKEN"] == "k"  # the course client's underscore header
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_a_chunked_body_is_given_whole_with_its_length():
    app = RecordingApp()
    with serving(app) as running:
        answer = httpx.post(
            f"http://127.0.0.1:{running.port}/", content=iter([b"abc", b"defg"])
        )  # an iterator: httpx sends it chunked
    assert answer.json() == {"read": 7}
    assert app.environs[0]["CONTENT_LENGTH"] == "7"
    assert "HTTP_TRANSFER_ENCODING" not in app.environs[0]


def test_a_declared_body_over_the_limit_goes_to_the_app_unread_and_the_connection_closes():
    app = RecordingApp()
    with serving(app) as running:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"
        status, headers, body = parsed(exchange(running.port, head + b"x" * 100))
    assert status == 413 and json.loads(body)["title"] == "Body too large"
    assert headers["connection"] == "close"
    assert app.environs[0]["body"] == b""


def test_a_chunked_body_over_the_limit_is_cut_one_byte_past_it():
    app = RecordingApp()
    with serving(app) as running:
        httpx.post(f"http://127.0.0.1:{running.port}/", content=iter([b"z" * 800] * 5))
    assert len(app.environs[0]["body"]) == LIMITS.max_body_bytes + 1


def test_head_answers_without_a_body():
    with serving(RecordingApp()) as running:
        answer = exchange(running.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, body = parsed(answer)
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_keep_alive_serves_several_requests_on_one_connection():
    app = RecordingApp()
    with serving(app) as running, httpx.Client() as http:
        for _ in range(3):
            assert http.get(f"http://127.0.0.1:{running.port}/").status_code == 200
    assert len({(e["REMOTE_ADDR"], e["REMOTE_PORT"]) for e in app.environs}) == 1


@pytest.mark.parametrize(
    ("request_bytes", "status", "words"),
    [
        (b"GET /" + b"u" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request line"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 9000 + b"\r\n\r\n", 431, "X-Big"),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n",
            431,
            "header fields",
        ),
        (
            b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"l" * 8000 + b"\r\n" * 1
            + b"".join(b"X-%d: " % i + b"m" * 8000 + b"\r\n" for i in range(8)) + b"\r\n",
            431,
            str(HEADER_BLOCK_BYTES),
        ),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400, "malformed"),
    ],
    ids=["uri", "field", "fields", "block", "request-line", "content-length"],
)  # fmt: skip
def test_protocol_errors_are_the_api_json(request_bytes: bytes, status: int, words: str):
    app = RecordingApp()
    with serving(app) as running:
        code, headers, body = parsed(exchange(running.port, request_bytes))
    assert code == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)
    assert set(error) == {"title", "description"} and str(status) in error["title"]
    assert words in error["description"]
    assert app.environs == []  # the app never saw it


def test_a_client_trickling_its_headers_is_cut_at_the_header_deadline():
    with serving(RecordingApp()) as running:
        with socket.create_connection(("127.0.0.1", running.port)) as slow:
            started = time.monotonic()
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\n":  # a byte every 0.1 s: never idle
                try:
                    slow.send(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.1)
                if time.monotonic() - started > 2:
                    break
            cut = closed_after(slow, 3.0)
            elapsed = time.monotonic() - started
        # Meanwhile, and after, others are served at once.
        assert httpx.get(f"http://127.0.0.1:{running.port}/").status_code == 200
    assert cut is not None
    assert LIMITS.header_timeout - 0.1 <= elapsed <= LIMITS.header_timeout + 0.5


def test_a_client_trickling_its_body_is_cut_at_the_body_deadline():
    with (
        serving(RecordingApp()) as running,
        socket.create_connection(("127.0.0.1", running.port)) as slow,
    ):
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        started = time.monotonic()
        for _ in range(20):
            try:
                slow.send(b"b")
            except OSError:
                break
            time.sleep(0.1)
        cut = closed_after(slow, 3.0)
        elapsed = time.monotonic() - started
    assert cut is not None
    assert LIMITS.body_timeout - 0.1 <= elapsed <= LIMITS.body_timeout + 0.5


def test_at_the_connection_cap_a_process_stops_accepting_until_one_closes():
    limits = replace(LIMITS, max_connections=2, header_timeout=1.5)
    with serving(RecordingApp(), limits) as running:
        idle = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(2)]
        try:
            time.sleep(0.2)
            # The kernel queues the third: it is not answered while the two are held.
            with pytest.raises(httpx.TimeoutException):
                httpx.get(f"http://127.0.0.1:{running.port}/", timeout=0.3)
            # The header deadline frees both; then it is served again.
            time.sleep(limits.header_timeout)
            assert httpx.get(f"http://127.0.0.1:{running.port}/", timeout=2).status_code == 200
        finally:
            for sock in idle:
                sock.close()


def test_stopping_finishes_a_request_in_progress_and_closes_idle_connections():
    app = RecordingApp()
    with serving(app, replace(LIMITS, body_timeout=5.0)) as running:
        idle = socket.create_connection(("127.0.0.1", running.port))
        busy = socket.create_connection(("127.0.0.1", running.port))
        try:
            busy.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
            time.sleep(0.2)
            left: list[int] = []

            def stop() -> None:
                running.server.stopping = True
                running.server.stop_accepting()
                left.append(running.server.close_idle())

            running.call(stop)
            assert left == [1]  # the busy one stays
            assert closed_after(idle, 1.0) is not None
            busy.sendall(b"def")
            busy.settimeout(2)
            status, headers, body = parsed(busy.recv(65536))
            assert status == 200 and json.loads(body) == {"read": 6}
            assert headers["connection"] == "close"
            assert closed_after(busy, 1.0) is not None
        finally:
            idle.close()
            busy.close()
