"""The frontend's HTTP server: a gunicorn worker that slow or idle clients cannot starve.

gunicorn's sync worker reads a request from a blocking socket, so two clients that send one
byte a second hold both workers, and every other request waits. Here one event loop per
worker reads every connection (tornado's HTTP/1.1 parser), and the Falcon app, unchanged and
still WSGI, gets a complete request: it runs on the loop, one request at a time per
process, as under the sync worker. What a client can hold is a connection, not the app:

- reading a request line and headers has a deadline (`http_header_timeout`, which also
  bounds how long a kept-alive connection may sit idle), reading its whole body another
  (`http_body_timeout`), and so has sending the answer (the body's): past one, the
  connection is closed. These are deadlines, not idle timeouts per read, so a byte a second
  does not keep a connection alive.
- a process holds at most gunicorn's `worker_connections` (`http_max_connections`); at the
  cap it stops accepting, and the kernel queues new connections for the other processes.
- a body is read up to `max_body_bytes` + 1 bytes and no further: a larger declared
  Content-Length goes to the app at once with no body (the app answers its own 413), and a
  chunked body that grows past the limit goes with its first `max_body_bytes` + 1 bytes.
- protocol errors are answered in the API's own JSON (`{"title", "description"}`, built by
  Falcon's error classes): a request line over gunicorn's `limit_request_line` is 414, too
  many header fields or one over `limit_request_field_size` is 431, a header block over
  `HEADER_BLOCK_BYTES` is 431, malformed HTTP is 400.

On SIGTERM the worker stops accepting, lets every request it has begun reading finish and
its answer go out (with `Connection: close`), closes idle connections, and exits; after
gunicorn's graceful timeout it closes what is left.

circus.ini runs it as `gunicorn --workers 1 --worker-class
services.frontend.http.server.Worker`, one gunicorn per Circus process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.workers.base import Worker as GunicornWorker
from tornado import httputil
from tornado.http1connection import (
    HTTP1Connection,
    HTTP1ConnectionParameters,
    HTTP1ServerConnection,
)
from tornado.ioloop import IOLoop, PeriodicCallback

from common.config import load_settings
from services.frontend.http.exchange import (
    HEADER_BLOCK_BYTES,
    Exchange,
    Limits,
    Peer,
    Stream,
    WsgiApp,
)

log = logging.getLogger("gunicorn.error")

# Out of the accept loop on these: the process is out of descriptors or memory for now.
_ACCEPT_PAUSE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ACCEPT_PAUSE_SECONDS = 0.5
# How often the worker tells the gunicorn master it is alive and checks for a stop.
TICK_SECONDS = 0.2


class Server(httputil.HTTPServerConnectionDelegate):
    """HTTP/1.1 on a tornado event loop in front of one WSGI app (see the module doc)."""

    def __init__(
        self, app: WsgiApp, limits: Limits, on_answer: Callable[[], None] = lambda: None
    ) -> None:
        self.app = app
        self.limits = limits
        self.stopping = False
        self._on_answer = on_answer
        self._params = HTTP1ConnectionParameters(
            no_keep_alive=not limits.keep_alive,
            max_header_size=limits.header_block,
            header_timeout=limits.header_timeout,
            body_timeout=limits.body_timeout,
            # Bodies are bounded by the exchange (max_body_bytes + 1), which answers through
            # the app; tornado's own limit would answer a bare 400 instead of the API's 413.
            max_body_size=sys.maxsize,
        )
        self._listeners: list[socket.socket] = []
        self._accepting = False
        self._connections: dict[HTTP1ServerConnection, Stream] = {}

    # --- connections ------------------------------------------------------------------

    def listen(self, sockets: Iterable[Any]) -> None:
        """Accept on these listening sockets (already bound; gunicorn's or plain)."""
        for listener in sockets:
            listener = getattr(listener, "sock", listener)  # gunicorn wraps its sockets
            listener.setblocking(False)
            self._listeners.append(listener)
        self._set_accepting(True)

    def stop_accepting(self) -> None:
        """Leave new connections in the kernel's queue, for the other processes."""
        self._set_accepting(False)

    @property
    def connections(self) -> int:
        return len(self._connections)

    def close_idle(self) -> int:
        """Close every connection with no request in progress; return how many are left."""
        for stream in list(self._connections.values()):
            if not stream.busy:
                stream.close()
        return sum(1 for stream in self._connections.values() if stream.busy)

    async def close_all(self) -> None:
        """Close every connection and wait until tornado has let go of each."""
        while self._connections:
            connection = next(iter(self._connections))
            await connection.close()
            self._connections.pop(connection, None)

    def _set_accepting(self, accepting: bool) -> None:
        if accepting == self._accepting or (accepting and self.stopping):
            return
        loop = IOLoop.current()
        for listener in self._listeners:
            if accepting:
                loop.add_handler(listener, self._accept, IOLoop.READ)
            else:
                loop.remove_handler(listener)
        self._accepting = accepting

    def _accept(self, listener: socket.socket, events: int) -> None:
        # One connection per wake-up, as gunicorn's gthread worker does: every process on
        # the shared socket wakes, so a burst of connections spreads over them rather than
        # going all to the first awake (kept-alive, they would stay there).
        try:
            connection, address = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another process took it, or the client gave up
        except OSError as exc:
            if exc.errno not in _ACCEPT_PAUSE_ERRNOS:
                raise
            log.warning("accept: %s; pausing %.1fs", exc, _ACCEPT_PAUSE_SECONDS)
            self._set_accepting(False)
            IOLoop.current().call_later(_ACCEPT_PAUSE_SECONDS, lambda: self._set_accepting(True))
            return
        self._serve(connection, address)
        if len(self._connections) >= self.limits.max_connections:
            self._set_accepting(False)  # at the cap: on_close resumes

    def _serve(self, connection: socket.socket, address: Any) -> None:
        # An answer goes out in one write: no reason to let Nagle hold it back.
        with contextlib.suppress(OSError):  # not TCP (a Unix socket)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = Stream(connection, self.limits.header_block)
        peer = Peer(stream, address, connection.getsockname())
        served = HTTP1ServerConnection(stream, self._params, peer)
        self._connections[served] = stream
        served.start_serving(self)

    # --- tornado's HTTPServerConnectionDelegate ---------------------------------------

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        assert isinstance(request_conn, HTTP1Connection)
        return Exchange(self, request_conn)

    def on_close(self, server_conn: object) -> None:
        self._connections.pop(server_conn, None)  # type: ignore[call-overload]
        if not self.stopping and len(self._connections) < self.limits.max_connections:
            self._set_accepting(True)

    def answered(self) -> None:
        self._on_answer()


class Worker(GunicornWorker):
    """gunicorn worker running `Server` on an asyncio event loop (tornado's IOLoop).

    The WSGI app is loaded after the fork as with every gunicorn worker (so the app's
    ControlLink thread and ZeroMQ context belong to this process), the sockets are the
    master's (Circus's `fd://`), and the master's heartbeat, max_requests, graceful timeout
    and parent check work as with gunicorn's own workers.
    """

    def run(self) -> None:
        if self.cfg.is_ssl:
            raise RuntimeError("this worker serves plain HTTP: terminate TLS in front of it")
        asyncio.run(self._serve())

    def limits(self) -> Limits:
        """The request limits: deadlines and the body limit from the mesh settings, the rest
        from gunicorn's own settings (set from the mesh settings in gunicorn_conf.py)."""
        settings = load_settings()
        return Limits(
            header_timeout=settings.http_header_timeout,
            body_timeout=settings.http_body_timeout,
            max_body_bytes=settings.max_body_bytes,
            max_connections=max(1, self.cfg.worker_connections),
            request_line=self.cfg.limit_request_line,
            header_fields=self.cfg.limit_request_fields,
            header_field_size=self.cfg.limit_request_field_size,
            keep_alive=self.cfg.keepalive > 0,
            header_block=max(
                HEADER_BLOCK_BYTES,
                self.cfg.limit_request_line + self.cfg.limit_request_field_size + 4,
            ),
        )

    async def _serve(self) -> None:
        server = Server(self.wsgi, self.limits(), on_answer=self._answered)
        server.listen(self.sockets)
        done = asyncio.Event()
        stop_by = None  # loop time after which the connections left are closed anyway
        loop = asyncio.get_running_loop()

        def tick() -> None:
            nonlocal stop_by
            if self.alive:
                self.notify()  # the master's heartbeat: this worker's loop is turning
                if self.ppid != os.getppid():
                    log.info("parent changed, shutting down: %s", self)
                    self.alive = False
            if self.alive:
                return
            if stop_by is None:
                # SIGTERM (gunicorn's handle_exit cleared `alive`), max_requests, or an
                # orphaned worker: stop as gunicorn's own workers do, within its
                # graceful timeout.
                server.stopping = True
                server.stop_accepting()
                stop_by = loop.time() + max(1.0, self.cfg.graceful_timeout - 1.0)
            if server.close_idle() == 0 or loop.time() > stop_by:
                done.set()

        ticker = PeriodicCallback(tick, TICK_SECONDS * 1000)
        ticker.start()
        try:
            await done.wait()
        finally:
            ticker.stop()
            await server.close_all()

    def _answered(self) -> None:
        self.nr += 1
        if self.alive and self.nr >= self.max_requests:
            log.info("autorestarting worker after %d requests", self.nr)
            self.alive = False
