"""The write side of the Firestore store: commits built as raw protobufs, conflicts, retries.

`Writer.commit` plans the articles into commits (store.firestore.plan) and sends each one.
A commit applies all or nothing: a marker that already exists fails it whole with
AlreadyExists. Then one batched read finds which markers exist, those articles are dropped
(a re-delivery adds nothing) and the rest is committed again.

The first surface text is kept, as in SQLite, without reading before writing: an entity
document this process has not seen yet is written with `create()` semantics (precondition
"does not exist", fields text + label + count increment); one it knows exists is written
with `update()` semantics (precondition "exists", only the count increment). A wrong guess
(another saver created it meanwhile, or it was deleted) fails the commit like an existing
marker does, and the same batched read that checks the markers settles it. So the text of
the commit that created the document stays, whatever the order of later writes. The
process remembers which entity documents exist in a bounded LRU set.

Transient errors (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are retried
with tenacity: exponential backoff with jitter for at most `retry_seconds`, then raised. The
saver sets none (0 s): it backs off the contended publication alone and commits the others
meanwhile (services/saver/schedule.py), which a sleep in here would block.
Retrying a commit is safe even when the failed attempt was in fact applied (a deadline can
expire after the server committed): its markers then exist, and each marker carries a random
`commit` token of the attempt, so the retry recognises its own markers and still reports
those articles as newly counted.

All or nothing holds per article, not per call: when `commit()` raises after some of its
commits succeeded, those articles are counted and marked; calling it again with the same
batch (what the saver does) counts each remaining article once and the others not again.

Why raw protobufs. The official WriteBatch builds every write through proto-plus wrappers
and document references, which costs more CPU than the emulator spends applying it. `build`
makes the same `Write` messages (same documents, preconditions, transforms) with the
underlying protobuf classes and `send` sends them with the client's own GAPIC commit call,
so channel, credentials and emulator metadata stay the client's. That uses three private
attributes of the client (`_database_string`, `_firestore_api`, `_rpc_metadata`): the
dependency is pinned below 3 and the contract tests run this path. bench/saver_store.py
measures both ways (bench/RESULTS.md); the WriteBatch version lives on in
bench/client_writes.py, a subclass overriding `build` and `send`.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.types import common, document, write
from google.cloud.firestore_v1.types import firestore as firestore_types
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from common.messages import Extraction
from store.firestore.ids import entity_path, marker_path, publication_path
from store.firestore.plan import Article, CommitLimits, articles_of, coalesce, plan_commits
from store.firestore.reader import existing_documents

log = logging.getLogger("store.firestore")

# Errors after which the same commit may simply be sent again.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.Aborted,
    api_exceptions.DeadlineExceeded,
    api_exceptions.ResourceExhausted,
)
# A precondition did not hold: a marker (or an entity document we guessed absent) exists, or
# an entity document we guessed present does not. Settled by reading, never by waiting.
CONFLICT_ERRORS: tuple[type[Exception], ...] = (
    api_exceptions.AlreadyExists,
    api_exceptions.NotFound,
    api_exceptions.FailedPrecondition,
)
RETRY_SECONDS = 0.0
FIRST_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 5.0
# Every round of conflicts learns the state of every document it read, so more rounds only
# happen while other savers keep creating the same documents; past this, let the caller retry.
MAX_CONFLICT_ROUNDS = 16
RPC_TIMEOUT = 60.0
KNOWN_ENTITIES = 200_000

# The raw (upb) protobuf classes behind the client's proto-plus types. proto-plus creates
# them at import time (there is no *_pb2 module to import), hence Any for type hints.
WriteProto = Any
WritePb = write.Write.pb()
DocumentPb = document.Document.pb()
ValuePb = document.Value.pb()
FieldTransformPb = write.DocumentTransform.FieldTransform.pb()
PreconditionPb = common.Precondition.pb()
DocumentMaskPb = common.DocumentMask.pb()
CommitRequestPb = firestore_types.CommitRequest.pb()
_SERVER_TIME_COMMITTED_AT = FieldTransformPb(
    field_path="committed_at", set_to_server_value=FieldTransformPb.ServerValue.REQUEST_TIME
)


def _increment(field_path: str, by: int) -> Any:
    """A FieldTransform protobuf adding `by` to a number field."""
    return FieldTransformPb(field_path=field_path, increment=ValuePb(integer_value=by))


_exponential = wait_exponential(multiplier=FIRST_RETRY_DELAY, exp_base=2, max=MAX_RETRY_DELAY)


def _backoff(state: RetryCallState) -> float:
    """0.1 s doubling up to 5 s, times a jitter of 0.5-1.5x that spreads savers out in time."""
    return _exponential(state) * (0.5 + random.random())


def _log_retry(state: RetryCallState) -> None:
    """Each retry is logged: a store that keeps retrying is a store in trouble."""
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "firestore commit retried", extra={"error": repr(error), "delay": state.upcoming_sleep}
    )


@dataclass(slots=True)
class _Progress:
    """How far the commit of one group got; it survives the retried attempts."""

    pending: list[Article]  # not committed yet, nor found counted
    ours: set[str] = field(default_factory=set)  # articles whose marker carries our token
    conflicts: int = 0


class Writer:
    """`Store.commit` on Firestore (see the module docstring).

    One per store, so one per saver process: what it learns about which entity documents
    exist lives as long as it does.
    """

    def __init__(
        self,
        client: firestore.Client,
        *,
        limits: CommitLimits | None = None,
        retry_seconds: float = RETRY_SECONDS,
        rpc_timeout: float = RPC_TIMEOUT,
        known_entities: int = KNOWN_ENTITIES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.rpc_timeout = rpc_timeout
        # "projects/P/databases/D" and the prefix of every document name in a Write.
        self._database: str = client._database_string
        self._documents_root = f"{self._database}/documents/"
        self._limits = limits or CommitLimits()
        self._retry_seconds = retry_seconds
        # Injectable so a test can run the retry schedule without waiting for it (tenacity
        # reads time.monotonic itself, hence the deadline checked in `_retrying`).
        self._sleep = sleep
        self._clock = clock
        # Entity documents ("pub_id/key_id") known to exist: written with update(), others
        # with create(). Bounded: forgetting one costs one conflict round, never a wrong count.
        self._known: OrderedDict[str, None] = OrderedDict()
        self._known_capacity = known_entities

    def commit(self, extractions: Sequence[Extraction]) -> list[str]:
        counted: list[str] = []
        groups = plan_commits(articles_of(extractions), self._limits, len(self._documents_root))
        for group in groups:
            counted += self._commit_group(group)
        return counted

    def knows(self, entity_doc: str) -> bool:
        """Whether this process believes the entity document "pub_id/key_id" exists."""
        return entity_doc in self._known

    # -- one group: conflicts and retries -------------------------------------------------

    def _commit_group(self, group: list[Article]) -> list[str]:
        """Commit one group until every article is counted or found already counted."""
        token = uuid.uuid4().hex
        progress = _Progress(pending=group)
        for attempt in self._retrying():
            with attempt:
                self._commit_pending(progress, token)
        return [a.id for a in group if a.id in progress.ours]

    def _retrying(self) -> Retrying:
        """The retry policy of one group: transient errors only, for `retry_seconds` at most."""
        deadline = self._clock() + self._retry_seconds
        return Retrying(
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            wait=_backoff,
            # Give up rather than start a sleep that would end past the deadline.
            stop=lambda state: self._clock() + state.upcoming_sleep > deadline,
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,  # the last error itself, not tenacity's RetryError
        )

    def _commit_pending(self, progress: _Progress, token: str) -> None:
        """Send the pending articles, settling conflicts, until none is left.

        A transient error leaves this attempt (whether it came from the commit or the read
        settling a conflict); the next attempt carries on from `progress`.
        """
        while progress.pending:
            pending = progress.pending
            try:
                self._commit_once(pending, token)
            except CONFLICT_ERRORS:
                progress.conflicts += 1
                if progress.conflicts > MAX_CONFLICT_ROUNDS:
                    raise
                guessed = self._known_among(pending)
                remaining = self._resolve(pending, token, progress.ours)
                if remaining == pending and self._known_among(pending) == guessed:
                    # No marker exists and every guess about entity documents was right:
                    # the failure is something else (e.g. a FAILED_PRECONDITION of the
                    # database itself), which sending again cannot fix.
                    raise
                progress.pending = remaining
                continue
            progress.ours.update(a.id for a in pending)
            self._remember(doc for a in pending for doc in a.entity_docs())
            return

    def _known_among(self, pending: list[Article]) -> set[str]:
        """Which entity documents of `pending` this process believes exist."""
        known = self._known
        return {doc for a in pending for doc in a.entity_docs() if doc in known}

    def _resolve(self, pending: list[Article], token: str, ours: set[str]) -> list[Article]:
        """After a failed precondition: read the markers and entity documents, drop counted."""
        entity_docs = {
            f"{a.pub_id}/{e}": entity_path(a.pub_id, e) for a in pending for e in a.entity_ids
        }
        markers = [marker_path(a.marker_id) for a in pending]
        # The `commit` field of each document that exists, by path.
        found = {
            snapshot.reference.path: snapshot.to_dict() or {}
            for snapshot in existing_documents(
                self.client, [*markers, *entity_docs.values()], field_paths=["commit"]
            )
        }
        for key, path in entity_docs.items():
            if path not in found:
                self._known.pop(key, None)
        self._remember(key for key, path in entity_docs.items() if path in found)
        remaining = []
        for article in pending:
            marker = found.get(marker_path(article.marker_id))
            if marker is None:
                remaining.append(article)
            elif marker.get("commit") == token:
                ours.add(article.id)  # an earlier attempt of ours was applied after all
        return remaining

    def _remember(self, entity_docs: Iterable[str]) -> None:
        known = self._known
        for doc in entity_docs:
            known[doc] = None
            known.move_to_end(doc)
        while len(known) > self._known_capacity:
            known.popitem(last=False)

    # -- one commit ------------------------------------------------------------------------

    def _commit_once(self, pending: list[Article], token: str) -> None:
        """One atomic commit: coalesced increments + the markers of exactly `pending`."""
        self.send(self.build(pending, token))

    def build(self, pending: list[Article], token: str) -> list[WriteProto]:
        """The `Write` protobufs of one commit (module docstring: "Why raw protobufs")."""
        root = self._documents_root
        counts = coalesce(pending)
        writes = []
        for pub_id, (name, articles) in counts.publications.items():
            # set(merge=True) semantics: the name (constant for this id) and an increment.
            writes.append(
                WritePb(
                    update=DocumentPb(
                        name=root + publication_path(pub_id),
                        fields={"name": ValuePb(string_value=name)},
                    ),
                    update_mask=DocumentMaskPb(field_paths=["name"]),
                    update_transforms=[_increment("articles", articles)],
                )
            )
        for doc, (pub_id, key_id, text, label, count) in counts.entities.items():
            name = root + entity_path(pub_id, key_id)
            if doc in self._known:
                # update() semantics: only the increment, and the document must exist.
                entity_write = WritePb(
                    update=DocumentPb(name=name),
                    update_mask=DocumentMaskPb(),
                    current_document=PreconditionPb(exists=True),
                    update_transforms=[_increment("count", count)],
                )
            else:
                # create() semantics: the first text and label, and it must not exist.
                entity_write = WritePb(
                    update=DocumentPb(
                        name=name,
                        fields={
                            "text": ValuePb(string_value=text),
                            "label": ValuePb(string_value=label),
                        },
                    ),
                    current_document=PreconditionPb(exists=False),
                    update_transforms=[_increment("count", count)],
                )
            writes.append(entity_write)
        for article in pending:
            # The marker: create() semantics, so an existing one fails the whole commit.
            writes.append(
                WritePb(
                    update=DocumentPb(
                        name=root + marker_path(article.marker_id),
                        fields={
                            "publication": ValuePb(string_value=article.extraction.publication),
                            "entities": ValuePb(integer_value=len(article.extraction.entities)),
                            "commit": ValuePb(string_value=token),
                        },
                    ),
                    current_document=PreconditionPb(exists=False),
                    update_transforms=[_SERVER_TIME_COMMITTED_AT],
                )
            )
        return writes

    def send(self, writes: list[WriteProto]) -> None:
        """Send one atomic commit through the client's own GAPIC stub (channel, metadata)."""
        request = CommitRequestPb(database=self._database, writes=writes)
        self.client._firestore_api.commit(
            # wrap(): hand the protobuf over without the copy CommitRequest(pb) would make.
            request=firestore_types.CommitRequest.wrap(request),
            metadata=self.client._rpc_metadata,
            # retry=None: the only retry policy is ours (bounded, marker-aware), not the
            # library's default one stacked under it.
            retry=None,
            timeout=self.rpc_timeout,
        )
