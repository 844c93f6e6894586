"""Posting rows to the mesh: cut into bodies under the server's limits, paced to a rate, and
sent by several threads, each with its own httpx client.

The reader (the calling thread) cuts batches; a bounded queue feeds the posting threads. 503
is "come back later": the same batch is sent again after its Retry-After. Connection errors
and other 5xx are retried with backoff (the server's ids make a re-sent batch count once).
Any other 4xx rejects the batch's articles; 401 and 403 stop the run.
"""

from __future__ import annotations

import contextlib
import functools
import math
import queue
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import NamedTuple, NoReturn

import httpx
import msgspec
from rich.progress import Progress, TaskID
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from loader.readers import Row, Skip
from loader.report import LoadResult

# Connection errors and 5xx other than 503: attempts per batch, backoff doubling from 0.5 s
# to 10 s plus up to 1 s of jitter, so that threads do not retry in step (35 to 43 s in all:
# enough to ride out a frontend restart).
CONNECT_ATTEMPTS = 8
BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_JITTER = 0.5, 10.0, 1.0
# A batch answered 503 for this long in a row ends the run: the mesh is not coming back.
MAX_UNAVAILABLE_SECONDS = 600.0
MAX_RETRY_AFTER = 300.0


@dataclass
class LoadOptions:
    """Where to post, with which key, and how hard."""

    url: str
    api_key: str
    concurrency: int = 4
    batch_size: int = 100
    max_body_bytes: int = 1 << 20
    rate: float | None = None  # articles/s, all threads together
    duration: float | None = None  # stop reading after this many seconds (benchmarks)
    timeout: float = 120.0  # per request: a big batch under FULL sync on a busy disk is slow
    transport: httpx.BaseTransport | None = None  # tests: an in-process server


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context (httpx's default: verified, CA bundle loaded) for every client of this
    process. httpx builds one per client otherwise, plain-HTTP URLs included, loading the CA
    bundle each time: ~40 ms of CPU per client, five clients per run, which was nearly all
    of a 1,500-article run's CPU (bench/RESULTS.md, "A mesh that sleeps")."""
    return httpx.create_ssl_context()


# --- Batching ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One POST's body, ready to send again as it is."""

    body: bytes  # a JSON array of articles
    count: int


def batches(rows: Iterable[Row], batch_size: int, max_body_bytes: int) -> Iterator[Batch | Skip]:
    """Cut articles into JSON-array bodies of at most `batch_size` articles and
    `max_body_bytes` bytes (the server answers 413 past it). Skips pass through in order;
    an article too large for a request on its own becomes one."""
    encoder = msgspec.json.Encoder()
    items: list[bytes] = []
    size = 2  # "[" and "]"
    for row in rows:
        if isinstance(row, Skip):
            yield row
            continue
        item = encoder.encode(row)
        if len(item) + 2 > max_body_bytes:
            yield Skip(f"article over the request limit ({max_body_bytes} bytes)")
            continue
        grown = size + len(item) + (1 if items else 0)  # 1: the comma
        if items and (len(items) >= batch_size or grown > max_body_bytes):
            yield Batch(b"[" + b",".join(items) + b"]", len(items))
            items, grown = [], 2 + len(item)
        items.append(item)
        size = grown
    if items:
        yield Batch(b"[" + b",".join(items) + b"]", len(items))


class Pacer:
    """Spreads batches so that all threads together post `rate` articles/s."""

    def __init__(self, rate: float | None) -> None:
        self._rate = rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, articles: int, stop: threading.Event) -> None:
        if not self._rate:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + articles / self._rate
        stop.wait(start - now)


# --- Posting -----------------------------------------------------------------------------


class Answer(NamedTuple):
    """The final answer to a batch: neither a 503 nor another 5xx."""

    response: httpx.Response
    latency: float  # seconds, of the POST that got this answer


class _Stopped(Exception):
    """The run is stopping: the batch is not sent again (it counts as unsent)."""


class _ServerError(Exception):
    """A 5xx other than 503: retried like a connection error."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _GaveUp(Exception):
    """The batch's retries ran out: the run stops with this message."""


class Loader:
    """One run: the reader (the calling thread) cuts batches; worker threads post them."""

    def __init__(self, options: LoadOptions, progress: Progress, task: TaskID) -> None:
        self.options = options
        self.result = LoadResult()
        self._url = options.url.rstrip("/") + "/articles"
        self._progress = progress
        self._task = task
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pacer = Pacer(options.rate)
        # Bounded: the reader stays a few batches ahead of the posters, not a file ahead.
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2 * options.concurrency)
        # Two layers (tenacity keeps each call's state per thread: one object serves all the
        # workers). The outer retries failures with backoff; each of its attempts waits out
        # 503s inside, so that a 503 neither uses up an attempt nor starts the backoff over.
        self._retry_failures = Retrying(
            retry=retry_if_exception_type((httpx.TransportError, _ServerError)),
            stop=stop_after_attempt(CONNECT_ATTEMPTS),
            wait=wait_exponential(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX)
            + wait_random(0, BACKOFF_JITTER),
            sleep=self._sleep,
            before_sleep=lambda _: self._count(retried=1),
            retry_error_callback=self._failed_too_often,
        )
        self._retry_unavailable = Retrying(
            retry=retry_if_result(lambda answer: answer.response.status_code == 503),
            stop=stop_after_delay(MAX_UNAVAILABLE_SECONDS),
            wait=_retry_after,
            sleep=self._sleep,
            before_sleep=self._note_unavailable,
            retry_error_callback=_unavailable_too_long,
        )

    def run(self, rows: Iterable[Row]) -> LoadResult:
        workers = [
            threading.Thread(target=self._worker, name=f"load-{n}", daemon=True)
            for n in range(self.options.concurrency)
        ]
        self.result.started = time.monotonic()
        for worker in workers:
            worker.start()
        batch_size = self.options.batch_size
        if self.options.rate:
            # The pacer spaces whole batches: keep each to about a quarter second's worth
            # of the target rate, or a slow rate would be a burst, then a long pause.
            batch_size = min(batch_size, max(1, math.ceil(self.options.rate / 4)))
        try:
            for item in batches(rows, batch_size, self.options.max_body_bytes):
                if self._stop.is_set():
                    break
                if self.options.duration and self._elapsed() > self.options.duration:
                    break
                if isinstance(item, Skip):
                    self.result.skipped[item.reason] += 1
                    continue
                self._enqueue(item)
        except BaseException:
            # Ctrl-C or a reader error: the posters finish the request in flight and count
            # the queued batches as unsent.
            self._stop.set()
            raise
        finally:
            for _ in workers:
                self._queue.put(None)
            for worker in workers:
                worker.join()
            self.result.finished = time.monotonic()
        return self.result

    def _elapsed(self) -> float:
        return time.monotonic() - self.result.started

    def _enqueue(self, batch: Batch) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(batch, timeout=0.2)
                return
        self._count(unsent=batch.count)

    def _count(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self.result, name, getattr(self.result, name) + n)

    def _fail(self, error: str) -> None:
        """Stop the whole run: nothing more will get through."""
        with self._lock:
            if self.result.error is None:
                self.result.error = error
        self._stop.set()

    def _sleep(self, seconds: float) -> None:
        """tenacity's sleep between attempts; cut short when the run stops (the next
        attempt then sees it and gives the batch up)."""
        self._stop.wait(seconds)

    def _worker(self) -> None:
        headers = {
            "Authorization": f"Bearer {self.options.api_key}",
            "Content-Type": "application/json",
        }
        timeout = httpx.Timeout(self.options.timeout, connect=5.0)
        with httpx.Client(
            headers=headers,
            timeout=timeout,
            transport=self.options.transport,
            verify=tls_context(),
        ) as client:
            while (batch := self._queue.get()) is not None:
                if self._stop.is_set():
                    self._count(unsent=batch.count)
                    continue
                self._pacer.wait(batch.count, self._stop)
                self._send(client, batch)

    def _send(self, client: httpx.Client, batch: Batch) -> None:
        """Post one batch until it has a final answer (or the run stops), and count it."""
        try:
            answer = self._retry_failures(self._post_when_available, client, batch)
        except _Stopped:
            self._count(unsent=batch.count)
            return
        except _GaveUp as exc:
            self._fail(str(exc))
            self._count(unsent=batch.count)
            return
        response, status = answer.response, answer.response.status_code
        if status < 300:
            accepted = _accepted(response, batch.count)
            with self._lock:
                self.result.accepted += accepted
                self.result.latencies.append(answer.latency)
            self._progress.update(self._task, advance=batch.count, note="")
            return
        # A 4xx: this batch will never be accepted as it is.
        with self._lock:
            self.result.rejected += batch.count
            if self.result.first_error is None:
                self.result.first_error = f"{status} {_body(response)}"
        self._progress.advance(self._task, batch.count)
        if status in (401, 403):
            self._fail(f"the API key was refused ({status}): {_body(response)}")

    def _post_when_available(self, client: httpx.Client, batch: Batch) -> Answer:
        """One attempt of the failure retries: 503s are waited out within it."""
        return self._retry_unavailable(self._post, client, batch)

    def _post(self, client: httpx.Client, batch: Batch) -> Answer:
        """One POST; a 5xx other than 503 is raised, to be retried as a failure."""
        if self._stop.is_set():
            raise _Stopped
        sent = time.perf_counter()
        try:
            response = client.post(self._url, content=batch.body)
        except httpx.TransportError:
            self._count(requests=1)
            raise
        latency = time.perf_counter() - sent
        self._count(requests=1)
        if response.status_code >= 500 and response.status_code != 503:
            raise _ServerError(response)
        return Answer(response, latency)

    def _note_unavailable(self, state: RetryCallState) -> None:
        response = _outcome(state).response
        self._count(retried=1, retried_unavailable=1)
        self._progress.update(self._task, note=f"503, retrying: {_body(response)[:60]}")

    def _failed_too_often(self, state: RetryCallState) -> NoReturn:
        assert state.outcome is not None  # tenacity gives up after an attempt
        error = state.outcome.exception()
        if isinstance(error, _ServerError):
            status = error.response.status_code
            raise _GaveUp(
                f"{status} after {state.attempt_number} attempts: {_body(error.response)}"
            )
        raise _GaveUp(
            f"cannot reach {self._url} after {state.attempt_number} attempts: {error!r}"
        ) from error


def _outcome(state: RetryCallState) -> Answer:
    """The answer the attempt got (tenacity calls wait, stop... after an attempt)."""
    assert state.outcome is not None
    return state.outcome.result()


def _retry_after(state: RetryCallState) -> float:
    """The wait after a 503: what the server says, not a backoff."""
    return retry_after_seconds(_outcome(state).response.headers.get("Retry-After"))


def _unavailable_too_long(state: RetryCallState) -> NoReturn:
    body = _body(_outcome(state).response)
    raise _GaveUp(f"503 for {state.seconds_since_start:.0f} s: {body}")


def retry_after_seconds(value: str | None, default: float = 1.0) -> float:
    """Retry-After as seconds: a number or an HTTP date; `default` if absent or unreadable."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _accepted(response: httpx.Response, sent: int) -> int:
    try:
        return int(response.json()["accepted"])
    except (ValueError, KeyError, TypeError):
        return sent  # a 2xx is acceptance of the whole body whatever it says


def _body(response: httpx.Response) -> str:
    return " ".join(response.text.split())[:500]
