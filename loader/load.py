"""`ingest load`: post a dataset to the mesh in batches, from several threads, and measure.

    ingest load articles.jsonl --concurrency 4 --batch-size 100 --wait
    ingest load all-the-news-2-1.csv --limit 100000 --rate 500
    ingest load lee_background.cor --publication "ABC News"
    ingest load --corpus lee --repeat 10 --wait --json

Formats (from `--format`, else the file extension):
- JSONL/NDJSON (`.jsonl`, `.ndjson`): one object per line, `publication`, `content`, `id`?;
- CSV (`.csv`): a header naming a `publication` column and a `content` or `article` column
  (an `id` column is used if present), e.g. "All the News 2.0";
- text (`.txt`, `.cor`): one article per line, all of publication `--publication`.
`--publication` is also the publication of JSONL/CSV rows that have none.

The file is streamed (a 2 GB CSV never sits in memory): one reader thread parses and cuts
batches, a bounded queue feeds `--concurrency` posting threads, each with its own httpx
client. A row that cannot be an article (empty content or publication, a malformed line, an
article larger than one request may be) is skipped and counted by reason, because the server
would reject the whole batch it sits in. 503 is "come back later": the same batch is sent
again after Retry-After. Connection errors and other 5xx are retried with backoff (the
server's ids make a re-sent batch count once). Any other 4xx rejects the batch's articles.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import queue
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from common.config import Settings
from common.messages import article_id
from loader.corpora import lee_articles
from services.control import mesh
from services.frontend.http.schemas import MAX_PUBLICATION_CHARS, ArticleIn

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "text", ".cor": "text"}
# "All the News 2.0" has articles of hundreds of KB; csv's default field limit is 128 KiB.
# 2**31 - 1 fits a C long everywhere (sys.maxsize overflows it on some platforms).
CSV_FIELD_LIMIT = 2**31 - 1
MAX_ID_CHARS = 200  # the server's limit on a client id (services/frontend/schemas.py)
LEE_PUBLICATIONS = ("ABC Science", "Lee Wire", "The Daily Corpus")

# Connection errors and 5xx other than 503: attempts per batch, backoff doubling from 0.5 s
# to 10 s (about 45 s in all: enough to ride out a frontend restart).
CONNECT_ATTEMPTS = 8
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
# A batch answered 503 for this long in a row ends the run: the mesh is not coming back.
MAX_UNAVAILABLE_SECONDS = 600.0
MAX_RETRY_AFTER = 300.0
REPORT_EVERY_ROWS = 256  # how often the reader updates the "read N%" progress text


class LoadError(mesh.MeshError):
    """The load cannot start or go on; the CLI prints it and exits non-zero."""


class Article(msgspec.Struct, omit_defaults=True):
    """One article as POST /articles takes it (no id: the server derives one)."""

    publication: str
    content: str
    id: str | None = None


@dataclass(frozen=True)
class Skip:
    """A row that is not sent, and why (the summary counts skips by reason)."""

    reason: str


Row = Article | Skip


# --- Reading -----------------------------------------------------------------------------


def make_row(publication: object, content: object, ident: object = None) -> Row:
    """An article, or the reason the server would reject it: checked here, against the
    server's own schema (ArticleIn), so that one bad row does not get a whole batch
    rejected."""
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)  # CSV and JSONL datasets often number their rows
    fields = {"publication": publication, "content": content}
    if ident is not None and ident != "":
        fields["id"] = ident
    try:
        article = msgspec.convert(fields, ArticleIn)
    except msgspec.ValidationError as exc:
        return Skip(_skip_reason(str(exc)))
    return Article(article.publication, article.content, article.id)


def _skip_reason(error: str) -> str:
    """A short, countable reason from msgspec's message (which names the field)."""
    if "`$.content`" in error or "field `content`" in error:
        return "empty or missing content"
    if "length <= " in error and "`$.publication`" in error:
        return f"publication over {MAX_PUBLICATION_CHARS} characters"
    if "`$.publication`" in error or "field `publication`" in error:
        return "empty or missing publication"
    return "invalid id"


def read_jsonl(lines: Iterable[str], publication: str | None = None) -> Iterator[Row]:
    """JSON Lines: one object per line; blank lines are not rows."""
    decoder = msgspec.json.Decoder()
    for line in lines:
        if not line.strip():
            continue
        try:
            item = decoder.decode(line)
        except msgspec.DecodeError:
            yield Skip("malformed JSON line")
            continue
        if not isinstance(item, dict):
            yield Skip("malformed JSON line")
            continue
        yield make_row(item.get("publication") or publication, item.get("content"), item.get("id"))


def _column(names: Sequence[str], *wanted: str) -> int | None:
    for name in wanted:
        if name in names:
            return names.index(name)
    return None


def read_csv(stream: Iterable[str], publication: str | None = None) -> Iterator[Row]:
    """CSV with a header: `publication`, `content` or `article`, and `id` if present."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    names = [name.strip().lower() for name in header]
    pub_at = _column(names, "publication")
    content_at = _column(names, "content", "article")
    id_at = _column(names, "id")
    if content_at is None or (pub_at is None and not publication):
        raise LoadError(
            "the CSV header must name a `publication` column (or give --publication) and a "
            f"`content` or `article` column; it has: {', '.join(header)}"
        )

    def cell(record: list[str], at: int | None) -> str | None:
        return record[at] if at is not None and at < len(record) else None

    for record in reader:
        if not record:  # a blank line
            continue
        yield make_row(
            cell(record, pub_at) or publication, cell(record, content_at), cell(record, id_at)
        )


def read_text(lines: Iterable[str], publication: str | None) -> Iterator[Row]:
    """One article per line, all of one publication; a blank line is an empty article."""
    if not publication:
        raise LoadError("a text file (one article per line) needs --publication NAME")
    for line in lines:
        yield make_row(publication, line.strip())


READERS: dict[str, Callable[[Iterable[str], str | None], Iterator[Row]]] = {
    "jsonl": read_jsonl,
    "csv": read_csv,
    "text": read_text,
}


def file_format(path: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise LoadError(
            f"cannot tell the format of {path.name} from its extension: give --format "
            f"({', '.join(sorted(READERS))})"
        ) from None


def read_file(
    path: Path,
    fmt: str,
    publication: str | None = None,
    on_position: Callable[[int], None] | None = None,
) -> Iterator[Row]:
    """Stream the rows of a file. `on_position(bytes_read)` is called now and then."""
    with path.open("rb") as raw:
        # utf-8-sig drops a BOM; undecodable bytes become U+FFFD rather than ending a long
        # load at row one million. newline="" is what csv needs (quoted newlines).
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        for n, row in enumerate(READERS[fmt](text, publication)):
            if on_position is not None and n % REPORT_EVERY_ROWS == 0:
                on_position(raw.tell())
            yield row


def distinct_copy(row: Row, copy: int) -> Row:
    """The `copy`-th repetition of a row: copies after the first get their own id, so the
    mesh counts every copy (the same id twice is counted once)."""
    if copy == 0 or isinstance(row, Skip):
        return row
    base = row.id or article_id(row.publication, row.content)
    ident = f"{base}~r{copy}"
    if len(ident) > MAX_ID_CHARS:
        ident = article_id(f"repeat {copy}", base)
    return Article(row.publication, row.content, ident)


def file_rows(
    path: Path,
    fmt: str,
    publication: str | None = None,
    repeat: int = 1,
    on_position: Callable[[int], None] | None = None,
) -> Iterator[Row]:
    """The file `repeat` times, read again each time (never held in memory)."""
    size = path.stat().st_size
    for copy in range(repeat):
        done = copy * size

        def position(at: int, done: int = done) -> None:
            if on_position is not None:
                on_position(done + at)

        for row in read_file(path, fmt, publication, position):
            yield distinct_copy(row, copy)


def lee_rows(repeat: int = 1, texts: Sequence[str] | None = None) -> Iterator[Article]:
    """The Lee corpus spread over three publications, `repeat` times; every line of every
    copy has its own id, so 300 x repeat articles are counted (the corpus repeats 7 texts)."""
    texts = lee_articles() if texts is None else texts
    for copy in range(repeat):
        for i, text in enumerate(texts):
            yield Article(LEE_PUBLICATIONS[i % len(LEE_PUBLICATIONS)], text, f"lee-{copy}-{i}")


def limited(rows: Iterable[Row], limit: int | None) -> Iterator[Row]:
    """Stop after `limit` articles (skipped rows do not count)."""
    if limit is None:
        yield from rows
        return
    if limit <= 0:
        return
    sent = 0
    for row in rows:
        yield row
        if isinstance(row, Article):
            sent += 1
            if sent >= limit:
                return


# --- Batching ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
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


# --- Measuring ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile, interpolating linearly between closest ranks (numpy's default);
    None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


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


@dataclass
class LoadResult:
    accepted: int = 0
    rejected: int = 0
    unsent: int = 0  # never answered: the run stopped (mesh gone, key refused, interrupted)
    skipped: Counter[str] = field(default_factory=Counter)
    requests: int = 0  # POSTs that got an answer or failed to connect, retries included
    retried: int = 0  # POSTs sent again (after a 503, a connection error or a 5xx)
    retried_unavailable: int = 0  # of which after a 503
    latencies: list[float] = field(default_factory=list)  # seconds, accepted POSTs
    first_error: str | None = None  # the first rejection: status and body
    error: str | None = None  # why the run stopped early
    started: float = 0.0  # monotonic: the first POST
    finished: float = 0.0  # monotonic: the last answer
    drain_seconds: float | None = None  # after the last answer, until drained
    drained: bool | None = None  # None: not waited for

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 1e-9)

    @property
    def articles_per_second(self) -> float:
        return self.accepted / self.seconds

    @property
    def end_to_end_seconds(self) -> float | None:
        if not self.drained or self.drain_seconds is None:
            return None
        return self.seconds + self.drain_seconds

    @property
    def ok(self) -> bool:
        return (
            not self.rejected
            and not self.unsent
            and self.error is None
            and self.drained is not False
        )

    def latency_ms(self) -> dict[str, float | None]:
        return {
            f"p{q}": None if (v := percentile(self.latencies, q)) is None else round(v * 1000, 1)
            for q in (50, 95, 99)
        }

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "skipped": sum(self.skipped.values()),
            "skipped_reasons": dict(self.skipped),
            "unsent": self.unsent,
            "requests": self.requests,
            "retried_requests": self.retried,
            "retried_503": self.retried_unavailable,
            "seconds": round(self.seconds, 3),
            "articles_per_second": round(self.articles_per_second, 1),
            "latency_ms": self.latency_ms(),
            "first_error": self.first_error,
            "error": self.error,
        }
        if self.drained is not None:
            end_to_end = self.end_to_end_seconds
            out |= {
                "drained": self.drained,
                "drain_seconds": None
                if self.drain_seconds is None
                else round(self.drain_seconds, 3),
                "end_to_end_seconds": None if end_to_end is None else round(end_to_end, 3),
                "end_to_end_articles_per_second": None
                if end_to_end is None
                else round(self.accepted / end_to_end, 1),
            }
        return out

    def report(self) -> str:
        """The human summary."""
        lat = self.latency_ms()
        fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        skipped = sum(self.skipped.values())
        reasons = ", ".join(f"{why}: {n}" for why, n in self.skipped.most_common())
        lines = [
            f"accepted  {self.accepted} articles in {self.seconds:.1f} s "
            f"({self.articles_per_second:.1f} articles/s)",
            f"rejected  {self.rejected}",
            f"skipped   {skipped}" + (f" ({reasons})" if reasons else ""),
            f"retried   {self.retried} requests of {self.requests} "
            f"({self.retried_unavailable} after 503)",
            f"latency   p50 {fmt(lat['p50'])} ms, p95 {fmt(lat['p95'])} ms, "
            f"p99 {fmt(lat['p99'])} ms (accepted POSTs)",
        ]
        if self.unsent:
            lines.append(f"unsent    {self.unsent}")
        if self.drained is not None:
            end_to_end = self.end_to_end_seconds
            if end_to_end is not None and self.drain_seconds is not None:
                lines.append(
                    f"drained   {self.drain_seconds:.1f} s after the last POST; end to end "
                    f"{end_to_end:.1f} s, {self.accepted / end_to_end:.1f} articles/s"
                )
            else:
                lines.append("drained   NO: the mesh still holds unprocessed articles")
        if self.first_error:
            lines.append(f"first rejection: {self.first_error}")
        if self.error:
            lines.append(f"stopped early: {self.error}")
        return "\n".join(lines)


# --- Posting -----------------------------------------------------------------------------


@dataclass
class LoadOptions:
    url: str
    api_key: str
    concurrency: int = 4
    batch_size: int = 100
    max_body_bytes: int = 1 << 20
    rate: float | None = None  # articles/s, all threads together
    duration: float | None = None  # stop reading after this many seconds (benchmarks)
    timeout: float = 120.0  # per request: a big batch under FULL sync on a busy disk is slow
    transport: httpx.BaseTransport | None = None  # tests: an in-process server


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


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("? articles/s" if speed is None else f"{speed:,.0f} articles/s")


class Loader:
    """One run: the reader (the calling thread) cuts batches; worker threads post them."""

    def __init__(self, options: LoadOptions, progress: Progress, task: TaskID) -> None:
        self.options = options
        self.result = LoadResult()
        self._progress = progress
        self._task = task
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pacer = Pacer(options.rate)
        # Bounded: the reader stays a few batches ahead of the posters, not a file ahead.
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2 * options.concurrency)

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

    def _worker(self) -> None:
        headers = {
            "Authorization": f"Bearer {self.options.api_key}",
            "Content-Type": "application/json",
        }
        timeout = httpx.Timeout(self.options.timeout, connect=5.0)
        with httpx.Client(
            headers=headers, timeout=timeout, transport=self.options.transport
        ) as client:
            while (batch := self._queue.get()) is not None:
                if self._stop.is_set():
                    self._count(unsent=batch.count)
                    continue
                self._pacer.wait(batch.count, self._stop)
                self._send(client, batch)

    def _send(self, client: httpx.Client, batch: Batch) -> None:
        url = self.options.url.rstrip("/") + "/articles"
        failures = 0
        unavailable_since: float | None = None
        while True:
            if self._stop.is_set():
                self._count(unsent=batch.count)
                return
            sent = time.perf_counter()
            try:
                response = client.post(url, content=batch.body)
            except httpx.TransportError as exc:
                self._count(requests=1)
                failures += 1
                if failures >= CONNECT_ATTEMPTS:
                    self._fail(f"cannot reach {url} after {failures} attempts: {exc!r}")
                    self._count(unsent=batch.count)
                    return
                self._count(retried=1)
                self._backoff(failures)
                continue
            latency = time.perf_counter() - sent
            self._count(requests=1)
            status = response.status_code
            if status < 300:
                accepted = _accepted(response, batch.count)
                with self._lock:
                    self.result.accepted += accepted
                    self.result.latencies.append(latency)
                self._progress.update(self._task, advance=batch.count, note="")
                return
            if status == 503:
                now = time.monotonic()
                unavailable_since = unavailable_since or now
                if now - unavailable_since > MAX_UNAVAILABLE_SECONDS:
                    self._fail(f"503 for {now - unavailable_since:.0f} s: {_body(response)}")
                    self._count(unsent=batch.count)
                    return
                self._count(retried=1, retried_unavailable=1)
                self._progress.update(self._task, note=f"503, retrying: {_body(response)[:60]}")
                self._stop.wait(retry_after_seconds(response.headers.get("Retry-After")))
                continue
            if status >= 500:
                failures += 1
                if failures >= CONNECT_ATTEMPTS:
                    self._fail(f"{status} after {failures} attempts: {_body(response)}")
                    self._count(unsent=batch.count)
                    return
                self._count(retried=1)
                self._backoff(failures)
                continue
            # A 4xx: this batch will never be accepted as it is.
            with self._lock:
                self.result.rejected += batch.count
                if self.result.first_error is None:
                    self.result.first_error = f"{status} {_body(response)}"
            self._progress.advance(self._task, batch.count)
            if status in (401, 403):
                self._fail(f"the API key was refused ({status}): {_body(response)}")
            return

    def _backoff(self, failures: int) -> None:
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
        self._stop.wait(delay * random.uniform(0.5, 1.5))  # jitter: threads do not align


def _accepted(response: httpx.Response, sent: int) -> int:
    try:
        return int(response.json()["accepted"])
    except (ValueError, KeyError, TypeError):
        return sent  # a 2xx is acceptance of the whole body whatever it says


def _body(response: httpx.Response) -> str:
    return " ".join(response.text.split())[:500]


def check_reachable(url: str, transport: httpx.BaseTransport | None = None) -> None:
    """Fail early, with a clear message, when nothing answers at `url`."""
    try:
        with httpx.Client(timeout=5.0, transport=transport) as client:
            client.get(url.rstrip("/") + "/health")
    except httpx.TransportError as exc:
        raise LoadError(
            f"the mesh is not reachable at {url} ({exc}); start it with `ingest up` or give --url"
        ) from exc


def make_progress(console: Console | None = None, enabled: bool = True) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=console or Console(stderr=True),
        disable=not enabled,
    )


def run_load(
    rows: Iterable[Row],
    options: LoadOptions,
    *,
    progress: Progress | None = None,
    task: TaskID | None = None,
) -> LoadResult:
    """Post `rows` with `options`; the Python API the CLI and the benchmarks share.
    `task` is a task of `progress` (see `add_task`) the posted articles advance."""
    check_reachable(options.url, options.transport)
    progress = progress or make_progress(enabled=False)
    if task is None:
        task = add_task(progress, "posting")
    with progress:
        return Loader(options, progress, task).run(rows)


def add_task(progress: Progress, description: str, total: int | None = None) -> TaskID:
    return progress.add_task(description, total=total, note="")


def wait_drained(
    settings: Settings, result: LoadResult, timeout: float, console: Console | None = None
) -> None:
    """Wait until the mesh has committed every accepted article; fill in the drain time."""
    console = console or Console(stderr=True)

    def progress(left: int, elapsed: float) -> None:
        if elapsed < 1.0:
            return  # the first look can predate the last commits: not worth printing
        what = "waiting for a ledger report" if left < 0 else f"{left} article(s) left"
        console.print(f"draining: {what} after {elapsed:.0f} s")

    try:
        left = mesh.drain(settings, timeout=timeout, progress=progress)
    except mesh.MeshError as exc:
        result.drained = False
        result.error = result.error or f"cannot watch the drain: {exc}"
        return
    result.drained = left == 0
    if result.drained:
        result.drain_seconds = time.monotonic() - result.finished
    else:
        result.error = result.error or f"not drained after {timeout:.0f} s"


# --- Command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", type=Path, help="JSONL/NDJSON, CSV or text file")
    parser.add_argument("--corpus", choices=["lee"], help="post the Lee corpus instead of FILE")
    parser.add_argument("--format", choices=sorted(READERS), help="default: from the extension")
    parser.add_argument(
        "--publication",
        help="publication of every article of a text file; for JSONL/CSV, of rows without one",
    )
    parser.add_argument("--url", help="the frontend (default: from the settings)")
    parser.add_argument("--api-key", help="default: the first configured key (the key file)")
    parser.add_argument("--concurrency", type=int, default=4, help="posting threads")
    parser.add_argument("--batch-size", type=int, default=100, help="articles per POST")
    parser.add_argument(
        "--rate",
        type=float,
        help="target articles/s (default: as fast as it goes); batches shrink to a quarter "
        "second's worth",
    )
    parser.add_argument("--limit", type=int, help="post at most N articles")
    parser.add_argument(
        "--repeat", type=int, default=1, help="post the dataset N times (copies get distinct ids)"
    )
    parser.add_argument(
        "--wait", action="store_true", help="then wait until the mesh has committed everything"
    )
    parser.add_argument("--wait-timeout", type=float, default=3600.0, help="seconds, for --wait")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def command(settings: Settings, args: argparse.Namespace) -> int:
    """`ingest load`: returns the exit status (non-zero if anything was not accepted)."""
    if (args.file is None) == (args.corpus is None):
        raise LoadError("give either FILE or --corpus lee")
    for name in ("concurrency", "batch_size", "repeat"):
        if getattr(args, name) < 1:
            raise LoadError(f"--{name.replace('_', '-')} must be at least 1")
    if args.batch_size > settings.max_batch:
        raise LoadError(
            f"--batch-size {args.batch_size} is over the server's max_batch {settings.max_batch}"
        )
    api_key = args.api_key or next(iter(settings.load_api_keys()), None)
    if not api_key:
        raise LoadError(
            f"no API key: give --api-key, set INGEST_API_KEYS, or put one in "
            f"{settings.api_key_path}"
        )
    options = LoadOptions(
        url=args.url or mesh.base_url(settings),
        api_key=api_key,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        max_body_bytes=settings.max_body_bytes,
        rate=args.rate,
    )
    console = Console(stderr=True)
    progress = make_progress(console)
    rows: Iterable[Row]
    if args.corpus == "lee":
        texts = lee_articles()
        rows = lee_rows(args.repeat, texts)
        total: int | None = len(texts) * args.repeat
        task = add_task(progress, f"Lee corpus x{args.repeat}")
    else:
        path: Path = args.file
        if not path.is_file():
            raise LoadError(f"no such file: {path}")
        fmt = file_format(path, args.format)
        if fmt == "text" and not args.publication:
            raise LoadError("a text file (one article per line) needs --publication NAME")
        # Articles in a file are not known before reading it: show how far the reader is.
        size = max(1, path.stat().st_size * args.repeat)
        total = None
        task = add_task(progress, path.name)

        def on_position(at: int) -> None:
            progress.update(task, description=f"{path.name}: read {100 * at / size:.0f}%")

        rows = file_rows(path, fmt, args.publication, args.repeat, on_position)
    if args.limit is not None:
        rows = limited(rows, args.limit)
        total = args.limit if total is None else min(total, args.limit)
    progress.update(task, total=total)

    result = run_load(rows, options, progress=progress, task=task)
    if args.wait and result.error is None:
        wait_drained(settings, result, args.wait_timeout, console)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print(result.report())
    sys.stdout.flush()
    return 0 if result.ok else 1
