"""One client connection of the frontend's HTTP server, and each request on it.

`Exchange` takes one request from its headers to the last byte of its answer: it refuses
what breaks a limit (414, 431) before reading on, reads the body up to `max_body_bytes` + 1
within the body deadline, runs the WSGI app on the complete request, and writes the answer.
`Stream` answers in the API's JSON where tornado would answer a bare 400 or close without a
word. The server that accepts connections and the gunicorn worker are in server.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes, urlsplit

import falcon
from tornado import httputil
from tornado.http1connection import (
    HTTP1Connection,
)
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, UnsatisfiableReadError

log = logging.getLogger("gunicorn.error")

# The most a request line plus its headers may take before the connection gets a 431 and is
# closed (tornado stops reading there). The per-line limits below it are gunicorn's.
HEADER_BLOCK_BYTES = 64 * 1024
# What tornado answers, with no body, to a request it cannot parse; swapped for JSON.
_TORNADO_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Limits:
    """What one request may take: time, sizes, and connections per process."""

    header_timeout: float
    body_timeout: float
    max_body_bytes: int
    max_connections: int
    request_line: int  # bytes; 0: no limit but HEADER_BLOCK_BYTES
    header_fields: int
    header_field_size: int
    keep_alive: bool = True
    header_block: int = HEADER_BLOCK_BYTES


class Host(Protocol):
    """What an exchange needs of the server that accepted its connection."""

    app: WsgiApp
    limits: Limits
    stopping: bool

    def answered(self) -> None: ...


def error_answer(error: falcon.HTTPError) -> bytes:
    """A whole HTTP/1.1 answer carrying `error` as the API's JSON, closing the connection."""
    body = error.to_json()
    head = (
        f"HTTP/1.1 {error.status}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Date: {_http_date()}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class Stream(IOStream):
    """One client connection: tornado's stream, answering in JSON where tornado would answer
    a bare 400 or close without a word (a header block over the limit)."""

    def __init__(self, connection: socket.socket, header_block: int) -> None:
        super().__init__(connection)
        self.header_block = header_block
        self.reading_headers = True  # waiting for the current request's headers
        self.answered = False  # the current request has its answer
        self.busy = False  # a request is between its headers and its answer's last byte

    def write(self, data: bytes | memoryview) -> asyncio.Future[None]:
        if len(data) == len(_TORNADO_BAD_REQUEST) and bytes(data) == _TORNADO_BAD_REQUEST:
            if self.answered:  # a framing error after the app answered: say nothing more
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                future.set_result(None)
                return future
            data = error_answer(falcon.HTTPBadRequest(description="malformed HTTP request"))
        return super().write(data)

    def close(self, exc_info: Any = False) -> None:
        if (
            isinstance(exc_info, UnsatisfiableReadError)
            and self.reading_headers
            and not self.closed()
        ):
            # tornado gives up on a header block over max_header_size by closing the stream;
            # say why first. The answer is small and the socket's buffer empty: one send.
            error = falcon.HTTPRequestHeaderFieldsTooLarge(
                description=f"the request line and headers exceed {self.header_block} bytes"
            )
            with contextlib.suppress(OSError):  # the client is gone: closing is all that is left
                self.socket.send(error_answer(error))
        super().close(exc_info)


class Peer:
    """Who is on the other end of a connection, and on which of our addresses."""

    def __init__(self, stream: Stream, address: Any, local: Any) -> None:
        self.stream = stream
        self.address = address if isinstance(address, tuple) else ("", 0)
        self.local = local if isinstance(local, tuple) else ("", 0)

    def __str__(self) -> str:  # tornado names the connection in its log lines with this
        return f"{self.address[0]}:{self.address[1]}"


class Exchange(httputil.HTTPMessageDelegate):
    """One request and its answer, from its headers to the last byte sent."""

    def __init__(self, server: Host, connection: HTTP1Connection) -> None:
        self.server = server
        self.connection = connection
        self.peer: Peer = connection.context  # type: ignore[assignment]
        self.stream = self.peer.stream
        self.stream.reading_headers = True
        self.stream.answered = False
        self.start_line: httputil.RequestStartLine | None = None
        self.headers = httputil.HTTPHeaders()
        self.body = bytearray()
        self.complete = False  # the whole request was read

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> None:
        assert isinstance(start_line, httputil.RequestStartLine)
        self.stream.reading_headers = False
        self.stream.busy = True
        self.start_line, self.headers = start_line, headers
        refusal = self._refusal()
        if refusal is not None:
            self._answer_error(refusal)
            return
        declared = headers.get("Content-Length", "")
        # ASCII digits only, as tornado reads it (str.isdigit alone takes other scripts').
        valid = declared.isascii() and declared.isdigit()
        if valid and int(declared) > self.server.limits.max_body_bytes:
            self._run_app()  # the app sees the length and answers 413 without a body

    def data_received(self, chunk: bytes) -> None:
        if self.stream.answered:
            return
        self.body += chunk
        limit = self.server.limits.max_body_bytes
        if len(self.body) > limit:
            del self.body[limit + 1 :]
            self._run_app()  # one byte over is enough for the app to answer 413

    def finish(self) -> None:
        self.complete = True
        if not self.stream.answered:
            self._run_app()

    def on_connection_close(self) -> None:
        self.stream.busy = False

    # --- checks -----------------------------------------------------------------------

    def _refusal(self) -> falcon.HTTPError | None:
        """The protocol error gunicorn's parser would have raised for these headers."""
        limits, line = self.server.limits, self.start_line
        assert line is not None
        length = len(line.method) + len(line.path) + len(line.version) + 2
        if limits.request_line and length > limits.request_line:
            return falcon.HTTPUriTooLong(
                description=f"the request line is {length} bytes, over {limits.request_line}"
            )
        fields = list(self.headers.get_all())
        if limits.header_fields and len(fields) > limits.header_fields:
            return falcon.HTTPRequestHeaderFieldsTooLarge(
                description=f"{len(fields)} header fields, over {limits.header_fields}"
            )
        for name, value in fields:
            size = len(name) + len(value) + 2
            if limits.header_field_size and size > limits.header_field_size:
                return falcon.HTTPRequestHeaderFieldsTooLarge(
                    description=f"the header field {name[:64]!r} is {size} bytes, "
                    f"over {limits.header_field_size}"
                )
        return None

    # --- the app ----------------------------------------------------------------------

    def _run_app(self) -> None:
        self.stream.answered = True
        status_headers: list[Any] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info is not None and status_headers:
                raise exc_info[1].with_traceback(exc_info[2])
            status_headers[:] = [status, headers]
            return chunks.append

        try:
            result = self.server.app(self._environ(), start_response)
            try:
                chunks.extend(chunk for chunk in result if chunk)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not status_headers:
                raise RuntimeError("the WSGI app did not call start_response")
        except Exception:
            line = self.start_line
            log.exception("error handling %s %s", line and line.method, line and line.path)
            self._answer_error(falcon.HTTPInternalServerError())
            return
        status, app_headers = status_headers
        code, _, reason = status.partition(" ")
        headers = httputil.HTTPHeaders()
        for name, value in app_headers:
            headers.add(name, value)
        self._answer(int(code), reason, headers, b"".join(chunks))

    def _environ(self) -> dict[str, Any]:
        """The WSGI environ gunicorn would build, with the body already read."""
        line = self.start_line
        assert line is not None
        target = line.path
        if target.startswith("/"):
            path, _, query = target.partition("?")
        else:  # absolute-form (or "*"): keep the path and query only
            parts = urlsplit(target)
            path, query = parts.path or "/", parts.query
        server_name, server_port = self.peer.local[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": line.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": target,
            "REQUEST_URI": target,
            "SERVER_NAME": str(server_name),
            "SERVER_PORT": str(server_port),
            "SERVER_PROTOCOL": line.version,
            "REMOTE_ADDR": str(self.peer.address[0]),
            "REMOTE_PORT": str(self.peer.address[1]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(bytes(self.body)),
            # The input ends where the body ends (it was de-chunked or read whole), so the
            # app may read it to the end even without a Content-Length (Falcon does).
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        for name, value in self.headers.get_all():
            # Underscores are kept, as gunicorn's --header-map dangerous did: the course
            # client's `access_token` header reaches the app as HTTP_ACCESS_TOKEN.
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
                continue
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        if chunked:
            # De-chunked here: the app gets a plain body of known length (Falcon reads
            # nothing from a body without one).
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["CONTENT_LENGTH"] = str(len(self.body))
        return environ

    # --- answers ----------------------------------------------------------------------

    def _answer_error(self, error: falcon.HTTPError) -> None:
        self.stream.answered = True
        headers = httputil.HTTPHeaders(
            {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"}
        )
        code, _, reason = error.status.partition(" ")  # type: ignore[union-attr]
        # A protocol error leaves the connection in an unknown state: close it afterwards.
        self._answer(int(code), reason, headers, error.to_json(), close=True)

    def _answer(
        self,
        code: int,
        reason: str,
        headers: httputil.HTTPHeaders,
        body: bytes,
        *,
        close: bool = False,
    ) -> None:
        line = self.start_line
        assert line is not None
        # Answered before the body was read (413, a protocol error): the rest of the body is
        # still on the wire, so the connection cannot carry another request.
        close = close or not self.complete
        no_body = code in (204, 304) or 100 <= code < 200
        if "Content-Length" not in headers and not no_body:
            headers["Content-Length"] = str(len(body))
        if no_body or line.method == "HEAD":
            body = b""  # nothing on the wire; a HEAD keeps the Content-Length a GET would have
        if "Date" not in headers:
            headers["Date"] = _http_date()
        if close or self.server.stopping:
            # Closing after this answer; when stopping: this process is going, come back
            # on another.
            headers["Connection"] = "close"
        try:
            sent = self.connection.write_headers(
                httputil.ResponseStartLine("HTTP/1.1", code, reason), headers, chunk=body
            )
            self.connection.finish()
        except Exception:  # an app header with CR/LF, a Content-Length that lies
            log.exception("cannot send the answer to %s %s", line.method, line.path)
            self.stream.close()
            self.stream.busy = False
            return
        self.server.answered()
        # A client that does not read its answer holds the connection for the body's
        # deadline at most.
        loop = IOLoop.current()
        deadline = loop.call_later(self.server.limits.body_timeout, self.stream.close)

        def sent_out(_: object) -> None:
            loop.remove_timeout(deadline)
            self.stream.busy = False
            if close or self.server.stopping:
                self.stream.close()

        sent.add_done_callback(sent_out)


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header's value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]
