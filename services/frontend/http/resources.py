"""HTTP resources: each verb validates, does one thing, answers."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Protocol

import falcon
import msgspec

from common import metrics
from common.control import ControlUnavailable, MeshSummary
from common.store import InvalidCursor, Store, UnknownPublication
from services.frontend.http.intake import Intake, media_type_of, readable, to_entry
from services.frontend.http.schemas import (
    Accepted,
    ArticleIn,
    EnqueueIn,
    HealthBody,
    PublicationList,
    Queued,
    Readiness,
)
from services.frontend.journal import Entry, Journal, WritesClosed


class Admission(Protocol):
    """Whether writes may be accepted now (the pipeline state heard from control)."""

    def accepting(self) -> tuple[bool, str]: ...

    def heard_seq(self) -> int: ...


class WritesInProgress:
    """Journal writes running in this process, by the state seq they were admitted under.

    Shared by the request path and the control link (which runs in another thread): the
    link confirms a new state only once no write admitted under an older one is still
    running, so when `ingest stop-writes` returns, every write that will get a 2xx has
    been journaled.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: Counter[int] = Counter()

    @contextlib.contextmanager
    def admitted(self, admission: Admission) -> Iterator[None]:
        with self._lock:
            seq = admission.heard_seq()
            self._running[seq] += 1
        try:
            yield
        finally:
            with self._lock:
                self._running[seq] -= 1
                if not self._running[seq]:
                    del self._running[seq]

    def confirmable(self, seq: int) -> int:
        """`seq` if nothing admitted before it is running, else the oldest running seq."""
        with self._lock:
            return min([seq, *self._running])


class Writes:
    """The way into the journal every write route shares: admission, then one commit.

    `admit` refuses early, before the body is read; the journal's gate, checked inside the
    commit, is what makes the refusal exact (a body that arrives after writes stopped is
    refused there, however it was admitted).
    """

    def __init__(
        self,
        journal: Journal,
        admission: Admission,
        retry_after: int,
        max_backlog: int,
        in_progress: WritesInProgress | None = None,
        on_journaled: Callable[[], None] | None = None,
    ) -> None:
        self._journal = journal
        self._admission = admission
        self._in_progress = in_progress or WritesInProgress()
        self._on_journaled = on_journaled or (lambda: None)
        self.retry_after = retry_after
        self.max_backlog = max_backlog

    def admit(self, req: falcon.Request) -> None:
        """503 + Retry-After unless the pipeline is accepting and the journal has room."""
        accepting, why = self._admission.accepting()
        if not accepting:
            raise self._not_accepting(req, why)
        if self._journal.backlog_bound() >= self.max_backlog:
            req.context.reject_reason = "backlog_full"
            # Backpressure: the mesh is behind; refuse rather than grow without bound.
            raise falcon.HTTPServiceUnavailable(
                title="Backlog full",
                description=f"{self.max_backlog} articles are waiting; try again later",
                retry_after=self.retry_after,
            )

    def journal(self, req: falcon.Request, entries: list[Entry]) -> None:
        try:
            with self._in_progress.admitted(self._admission):
                journaled = self._journal.append(entries)
        except WritesClosed as exc:
            raise self._not_accepting(req, str(exc)) from None
        except sqlite3.OperationalError as exc:
            req.context.reject_reason = "journal_unavailable"
            # Locked past the busy timeout or out of disk: nothing was journaled, so say
            # "try again" rather than accept what we could not keep.
            raise falcon.HTTPServiceUnavailable(
                title="Journal unavailable", description=str(exc), retry_after=self.retry_after
            ) from exc
        metrics.JOURNALED.inc(journaled)
        metrics.ACCEPTED.inc(len(entries))
        if journaled:
            self._on_journaled()  # after the commit: the ledger's read will see the rows

    def _not_accepting(self, req: falcon.Request, why: str) -> falcon.HTTPServiceUnavailable:
        req.context.reject_reason = "not_accepting"
        return falcon.HTTPServiceUnavailable(
            title="Not accepting writes", description=why, retry_after=self.retry_after
        )


class Articles:
    """POST /articles: one article, a JSON array, or NDJSON; 202 once journaled."""

    auth = "api_key"

    def __init__(self, writes: Writes, intake: Intake, max_body_bytes: int) -> None:
        self._writes = writes
        self._intake = intake
        self._max_body = max_body_bytes

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._writes.admit(req)
        media_type = media_type_of(req.content_type)
        entries = self._intake.parse(media_type, read_body(req, self._max_body))
        self._writes.journal(req, entries)
        resp.status = falcon.HTTP_202
        resp.media = msgspec.to_builtins(Accepted(len(entries), [e.id for e in entries]))


class Enqueue:
    """POST /post/enqueue: the original course client's route; 201 once journaled."""

    auth = "access_token"

    def __init__(self, writes: Writes, max_body_bytes: int) -> None:
        self._writes = writes
        self._max_body = max_body_bytes
        self._decoder = msgspec.json.Decoder(EnqueueIn)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._writes.admit(req)
        # The course client sent JSON, with or without saying so: no Content-Type is JSON.
        media_type_of(req.content_type or "application/json")
        body = read_body(req, self._max_body)
        try:
            item = self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise falcon.HTTPUnprocessableEntity(
                title="Invalid article", description=readable(exc, body)
            ) from None
        except msgspec.DecodeError as exc:
            raise falcon.HTTPBadRequest(title="Malformed JSON", description=str(exc)) from None
        entry = to_entry(ArticleIn(publication=item.publication, content=item.content))
        self._writes.journal(req, [entry])
        resp.status = falcon.HTTP_201
        resp.media = msgspec.to_builtins(Queued("queued", entry.id))


class Publications:
    """GET /publications: publications by article count."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", min_value=1, max_value=1000, default=100)
        resp.media = msgspec.to_builtins(PublicationList(self._store.publications(limit)))


class Entities:
    """GET /publications/{name}/entities: top entities by count, ties by text, paged."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def on_get_query(self, req: falcon.Request, resp: falcon.Response) -> None:
        """GET /entities?publication=NAME: the same, with the publication as a query parameter.

        For names a path cannot carry, such as "a/b": gunicorn decodes %2F before routing.
        """
        self.on_get(req, resp, req.get_param("publication", required=True))

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        limit = req.get_param_as_int("limit", min_value=1, max_value=1000, default=20)
        label = req.get_param("label") or None
        try:
            # An empty cursor is the first page, as an absent one is.
            page = self._store.top_entities(name, limit, req.get_param("cursor") or None, label)
        except UnknownPublication:
            raise falcon.HTTPNotFound(
                title="Unknown publication", description=f"no article of {name!r} is counted"
            ) from None
        except InvalidCursor as exc:
            raise falcon.HTTPBadRequest(title="Invalid cursor", description=str(exc)) from None
        resp.media = msgspec.to_builtins(page)


class Health:
    """GET /health: the process is up."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = msgspec.to_builtins(HealthBody("ok"))


MeshStatus = Callable[[], MeshSummary]


class Status:
    """GET /status: the whole mesh at a glance (state, processes, backlog, rates)."""

    def __init__(self, mesh_status: MeshStatus) -> None:
        self._mesh_status = mesh_status

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            resp.media = msgspec.to_builtins(self._mesh_status())
        except ControlUnavailable as exc:
            raise falcon.HTTPServiceUnavailable(
                title="Control unavailable", description=str(exc), retry_after=1
            ) from exc


class Ready:
    """GET /ready: 200 when this worker may take writes and everything behind it works;
    503 naming each failed check otherwise."""

    def __init__(self, admission: Admission, mesh_status: MeshStatus, store: Store) -> None:
        self._admission = admission
        self._mesh_status = mesh_status
        self._store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {
            "accepting": self._accepting(),
            "ledger": self._ledger(),
            "store": self._store_reachable(),
        }
        failed = {name: why for name, why in checks.items() if why}
        verdict = Readiness(not failed, {k: v or "ok" for k, v in checks.items()})
        resp.media = msgspec.to_builtins(verdict)
        if failed:
            resp.status = falcon.HTTP_503
            resp.append_header("Retry-After", "1")

    def _accepting(self) -> str:
        accepting, why = self._admission.accepting()
        return "" if accepting else why

    def _ledger(self) -> str:
        try:
            summary = self._mesh_status()
        except ControlUnavailable as exc:
            return str(exc)
        return "" if summary.processes.get("ledger") else "no ledger is reporting"

    def _store_reachable(self) -> str:
        try:
            self._store.publications(limit=1)
        except Exception as exc:  # any failure of the store is the answer here
            return f"store unreachable: {type(exc).__name__}: {exc}"[:500]
        return ""


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The whole body, or 413 past `limit` bytes (checked before and while reading)."""
    if req.content_length is not None and req.content_length > limit:
        raise _too_large(limit)
    body = req.bounded_stream.read(limit + 1)
    if len(body) > limit:
        raise _too_large(limit)
    return body


def _too_large(limit: int) -> falcon.HTTPContentTooLarge:
    return falcon.HTTPContentTooLarge(
        title="Body too large", description=f"the body exceeds {limit} bytes"
    )
