"""The production store: Google Cloud Firestore (the emulator in tests and local runs).

Layout (the same as the SQLite store's tables):

    publications/{pub}                  {name, articles}
    publications/{pub}/entities/{key}   {text, label, count}
    articles/{id}                       {publication, entities, committed_at, commit}

Document ids. Publication names and client article ids are free text: "a/b" would be a
path, "." and ".." are forbidden ids, "__x__" is reserved. `document_id` percent-encodes
every character except ASCII letters, digits and "-" (so "ABC Science" is
"ABC%20Science": stable, readable in the console, reversible); a name whose encoding is
longer than Firestore's 1,500-byte id limit becomes "~" + a digest of it ("~" is always
encoded, so the two forms cannot collide). The readable name stays in the `name` field.
Entity keys are hex digests already and come out of the encoder unchanged.

Writes. `commit()` coalesces the counts of its articles per document (one `Increment` per
publication and per entity), and sends them in commits of at most 500 writes (markers +
entity documents + publication documents). One article's writes never straddle two commits,
and every commit carries the `create()` marker of exactly the articles whose counts it adds,
so each commit applies all or nothing: a marker that already exists fails the whole commit
with AlreadyExists. Then one batched read finds which markers exist, those articles are
dropped (a re-delivery adds nothing) and the rest is committed again.

The first surface text is kept, as in SQLite, without reading before writing: an entity
document this process has not seen yet is written with `create()` semantics (precondition
"does not exist", fields text + label + count increment); one it knows exists is written
with `update()` semantics (precondition "exists", only the count increment). A wrong guess
(another saver created it meanwhile, or it was deleted) fails the commit like an existing
marker does, and the same batched read that checks the markers settles it. So the text of
the commit that created the document stays, whatever the order of later writes. The
process remembers which entity documents exist in a bounded LRU set.

Transient errors (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) are retried
with exponential backoff and jitter for at most `retry_seconds`, then raised. Retrying a
commit is safe even when the failed attempt was in fact applied (a deadline can expire
after the server committed): its markers then exist, and each marker carries a random
`commit` token of the attempt, so the retry recognises its own markers and still reports
those articles as newly counted.

All or nothing holds per article, not per call: when `commit()` raises after some of its
commits succeeded, those articles are counted and marked; calling it again with the same
batch (what the saver does) counts each remaining article once and the others not again.

Why raw protobufs. The official WriteBatch builds every write through proto-plus wrappers
and document references, which costs more CPU than the emulator spends applying it. `_build`
makes the same `Write` messages (same documents, preconditions, transforms) with the
underlying protobuf classes and `_commit_writes` sends them with the client's own GAPIC
commit call, so channel, credentials and emulator metadata stay the client's. That uses
three private attributes of the client (`_database_string`, `_firestore_api`,
`_rpc_metadata`): the dependency is pinned below 3 and the contract tests run this path.
bench/saver_store.py measures both ways (bench/RESULTS.md); the WriteBatch version lives on
in bench/client_writes.py.

Reads use the official client's queries; they need the composite indexes in
`firestore.indexes.json` on real Firestore (the emulator does not enforce indexes).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

from google.api_core import exceptions as api_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.types import common, document, write
from google.cloud.firestore_v1.types import firestore as firestore_types

from common.config import ConfigError, Settings
from common.messages import Extraction
from common.store import (
    EntityCount,
    EntityPage,
    PublicationCount,
    UnknownPublication,
    decode_cursor,
    encode_cursor,
)

log = logging.getLogger("store.firestore")

PUBLICATIONS = "publications"
ENTITIES = "entities"
ARTICLES = "articles"

# Firestore's documented limit of writes per batched write / commit.
MAX_WRITES = 500
MAX_ID_BYTES = 1500

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
RETRY_SECONDS = 30.0
FIRST_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 5.0
# Every round of conflicts learns the state of every document it read, so more rounds only
# happen while other savers keep creating the same documents; past this, let the caller retry.
MAX_CONFLICT_ROUNDS = 16
RPC_TIMEOUT = 60.0
KNOWN_ENTITIES = 200_000
GET_CHUNK = 500


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


@lru_cache(maxsize=65536)
def document_id(name: str) -> str:
    """A safe, stable Firestore document id for any string (see the module docstring)."""
    # quote() leaves "_.-~" alone; "." / ".." and "__x__" are not valid ids, and "~" marks
    # the digest form, so those are encoded too.
    encoded = quote(name, safe="").replace(".", "%2E").replace("_", "%5F").replace("~", "%7E")
    if not encoded or len(encoded) > MAX_ID_BYTES:
        return "~" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()
    return encoded


def name_of(doc_id: str) -> str:
    """The string `document_id` encoded (not for the digest form of over-long names)."""
    return unquote(doc_id)


def _entity_path(pub_id: str, key_id: str) -> str:
    return f"{PUBLICATIONS}/{pub_id}/{ENTITIES}/{key_id}"


@dataclass(slots=True)
class _Article:
    """One extraction with the document ids its commit touches."""

    extraction: Extraction
    pub_id: str
    marker_id: str
    entity_ids: list[str]  # entity document ids, one per distinct key

    @property
    def id(self) -> str:
        return self.extraction.id


def plan_commits(
    articles: Sequence[_Article], max_writes: int = MAX_WRITES
) -> list[list[_Article]]:
    """Group articles in order into commits of at most `max_writes` writes.

    A commit writes one marker per article plus one write per distinct publication and per
    distinct entity document of its articles. An article is never split; one that alone
    needs more than `max_writes` (over ~500 distinct entities) goes alone in a bigger
    commit: splitting it would give up its atomicity, which is worse. The emulator accepts
    such commits (checked with 600-700 writes); that real Firestore does too, limited by
    the 10 MiB request size rather than a write count, is not verified here. If it refuses
    (INVALID_ARGUMENT), the commit raises and that batch is not acknowledged.
    """
    groups: list[list[_Article]] = []
    group: list[_Article] = []
    docs: set[str] = set()
    for article in articles:
        new_docs = {article.pub_id, *(f"{article.pub_id}/{e}" for e in article.entity_ids)}
        new_docs -= docs
        if group and len(group) + len(docs) + 1 + len(new_docs) > max_writes:
            groups.append(group)
            group, docs = [], set()
            new_docs = {article.pub_id, *(f"{article.pub_id}/{e}" for e in article.entity_ids)}
        group.append(article)
        docs |= new_docs
    if group:
        groups.append(group)
    return groups


def commit_writes(group: Sequence[_Article]) -> int:
    """How many writes `group` commits: markers + publications + entity documents."""
    docs = {a.pub_id for a in group}
    docs.update(f"{a.pub_id}/{e}" for a in group for e in a.entity_ids)
    return len(group) + len(docs)


@dataclass(slots=True)
class _Counts:
    """The coalesced counts of one commit."""

    # pub id -> [name, articles]
    publications: dict[str, list]
    # "pub_id/key_id" -> [pub_id, key_id, text, label, count]; text/label of the first article
    entities: dict[str, list]


def _coalesce(group: Iterable[_Article]) -> _Counts:
    publications: dict[str, list] = {}
    entities: dict[str, list] = {}
    for article in group:
        extraction = article.extraction
        pub = publications.get(article.pub_id)
        if pub is None:
            publications[article.pub_id] = [extraction.publication, 1]
        else:
            pub[1] += 1
        for key_id, entity in zip(article.entity_ids, extraction.entities, strict=True):
            path = f"{article.pub_id}/{key_id}"
            row = entities.get(path)
            if row is None:
                entities[path] = [article.pub_id, key_id, entity.text, entity.label, entity.count]
            else:
                row[4] += entity.count
    return _Counts(publications, entities)


class FirestoreStore:
    def __init__(
        self,
        client: firestore.Client,
        *,
        max_writes: int = MAX_WRITES,
        retry_seconds: float = RETRY_SECONDS,
        rpc_timeout: float = RPC_TIMEOUT,
        known_entities: int = KNOWN_ENTITIES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._publications = client.collection(PUBLICATIONS)
        self._articles = client.collection(ARTICLES)
        # "projects/P/databases/D" and the prefix of every document name in a Write.
        self._database: str = client._database_string
        self._documents_root = f"{self._database}/documents/"
        self._max_writes = max_writes
        self._retry_seconds = retry_seconds
        self._rpc_timeout = rpc_timeout
        # Injectable so a test can run the retry schedule without waiting for it.
        self._sleep = sleep
        self._clock = clock
        # Entity documents ("pub_id/key_id") known to exist: written with update(), others
        # with create(). Bounded: forgetting one costs one conflict round, never a wrong count.
        self._known: OrderedDict[str, None] = OrderedDict()
        self._known_capacity = known_entities

    # -- writes --------------------------------------------------------------------------

    def commit(self, extractions: Sequence[Extraction]) -> list[str]:
        articles: dict[str, _Article] = {}
        for extraction in extractions:
            if extraction.id in articles:
                continue  # the same article twice in one call counts once
            articles[extraction.id] = _Article(
                extraction,
                document_id(extraction.publication),
                document_id(extraction.id),
                [document_id(e.key) for e in extraction.entities],
            )
        counted: list[str] = []
        for group in plan_commits(list(articles.values()), self._max_writes):
            counted += self._commit_group(group)
        return counted

    def _commit_group(self, group: list[_Article]) -> list[str]:
        """Commit one group until every article is counted or found already counted."""
        token = uuid.uuid4().hex
        pending = group
        ours: set[str] = set()  # articles whose marker carries this token
        conflicts = 0
        delay = FIRST_RETRY_DELAY
        deadline = self._clock() + self._retry_seconds
        while pending:
            try:
                self._send(pending, token)
            except CONFLICT_ERRORS as conflict:
                conflicts += 1
                if conflicts > MAX_CONFLICT_ROUNDS:
                    raise
                guessed = self._known_among(pending)
                try:
                    remaining = self._resolve(pending, token, ours)
                except TRANSIENT_ERRORS as exc:
                    delay = self._backoff(exc, deadline, delay)
                    continue
                if remaining == pending and self._known_among(pending) == guessed:
                    # No marker exists and every guess about entity documents was right:
                    # the failure is something else (e.g. a FAILED_PRECONDITION of the
                    # database itself), which sending again cannot fix.
                    raise conflict
                pending = remaining
                continue
            except TRANSIENT_ERRORS as exc:
                delay = self._backoff(exc, deadline, delay)
                continue
            ours.update(a.id for a in pending)
            self._remember(f"{a.pub_id}/{e}" for a in pending for e in a.entity_ids)
            break
        return [a.id for a in group if a.id in ours]

    def _known_among(self, pending: list[_Article]) -> set[str]:
        """Which entity documents of `pending` this process believes exist."""
        known = self._known
        return {path for a in pending for e in a.entity_ids if (path := f"{a.pub_id}/{e}") in known}

    def _backoff(self, exc: Exception, deadline: float, delay: float) -> float:
        """Sleep before the next attempt (exponential delay, jitter 0.5-1.5x), or re-raise."""
        pause = delay * (0.5 + random.random())
        if self._clock() + pause > deadline:
            raise exc
        log.warning("firestore commit retried", extra={"error": repr(exc), "delay": pause})
        self._sleep(pause)
        return min(delay * 2, MAX_RETRY_DELAY)

    def _resolve(self, pending: list[_Article], token: str, ours: set[str]) -> list[_Article]:
        """After a failed precondition: read the markers and entity documents, drop counted."""
        entity_docs = {
            f"{a.pub_id}/{e}": _entity_path(a.pub_id, e) for a in pending for e in a.entity_ids
        }
        markers = [f"{ARTICLES}/{a.marker_id}" for a in pending]
        found = self._read([*markers, *entity_docs.values()])
        for key, path in entity_docs.items():
            if found.get(path) is None:
                self._known.pop(key, None)
        self._remember(key for key, path in entity_docs.items() if found.get(path) is not None)
        remaining = []
        for article in pending:
            marker = found.get(f"{ARTICLES}/{article.marker_id}")
            if marker is None:
                remaining.append(article)
            elif marker.get("commit") == token:
                ours.add(article.id)  # an earlier attempt of ours was applied after all
        return remaining

    def _read(self, paths: list[str]) -> dict[str, dict]:
        """The `commit` field of each of these documents that exists, by path (batched)."""
        found: dict[str, dict] = {}
        for start in range(0, len(paths), GET_CHUNK):
            refs = [self._client.document(p) for p in paths[start : start + GET_CHUNK]]
            for snapshot in self._client.get_all(refs, field_paths=["commit"]):
                if snapshot.exists:
                    found[snapshot.reference.path] = snapshot.to_dict() or {}
        return found

    def _remember(self, paths: Iterable[str]) -> None:
        known = self._known
        for path in paths:
            known[path] = None
            known.move_to_end(path)
        while len(known) > self._known_capacity:
            known.popitem(last=False)

    def _send(self, pending: list[_Article], token: str) -> None:
        """One atomic commit: coalesced increments + the markers of exactly `pending`."""
        self._commit_writes(self._build(pending, token))

    def _build(self, pending: list[_Article], token: str) -> list[WriteProto]:
        """The `Write` protobufs of one commit (module docstring: "Why raw protobufs")."""
        root = self._documents_root
        counts = _coalesce(pending)
        writes = []
        for pub_id, (name, articles) in counts.publications.items():
            # set(merge=True) semantics: the name (constant for this id) and an increment.
            writes.append(
                WritePb(
                    update=DocumentPb(
                        name=f"{root}{PUBLICATIONS}/{pub_id}",
                        fields={"name": ValuePb(string_value=name)},
                    ),
                    update_mask=DocumentMaskPb(field_paths=["name"]),
                    update_transforms=[_increment("articles", articles)],
                )
            )
        for path, (pub_id, key_id, text, label, count) in counts.entities.items():
            name = f"{root}{PUBLICATIONS}/{pub_id}/{ENTITIES}/{key_id}"
            if path in self._known:
                # update() semantics: only the increment, and the document must exist.
                write = WritePb(
                    update=DocumentPb(name=name),
                    update_mask=DocumentMaskPb(),
                    current_document=PreconditionPb(exists=True),
                    update_transforms=[_increment("count", count)],
                )
            else:
                # create() semantics: the first text and label, and it must not exist.
                write = WritePb(
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
            writes.append(write)
        for article in pending:
            # The marker: create() semantics, so an existing one fails the whole commit.
            writes.append(
                WritePb(
                    update=DocumentPb(
                        name=f"{root}{ARTICLES}/{article.marker_id}",
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

    def _commit_writes(self, writes: list[WriteProto]) -> None:
        """Send one atomic commit through the client's own GAPIC stub (channel, metadata)."""
        request = CommitRequestPb(database=self._database, writes=writes)
        self._client._firestore_api.commit(
            # wrap(): hand the protobuf over without the copy CommitRequest(pb) would make.
            request=firestore_types.CommitRequest.wrap(request),
            metadata=self._client._rpc_metadata,
            # retry=None: the only retry policy is ours (bounded, marker-aware), not the
            # library's default one stacked under it.
            retry=None,
            timeout=self._rpc_timeout,
        )

    # -- reads ---------------------------------------------------------------------------

    def publications(self, limit: int = 100) -> list[PublicationCount]:
        query = (
            self._publications.order_by("articles", direction=firestore.Query.DESCENDING)
            .order_by("name")
            .limit(limit)
        )
        return [
            PublicationCount(data["name"], data["articles"])
            for data in (snapshot.to_dict() or {} for snapshot in query.stream())
        ]

    def top_entities(
        self,
        publication: str,
        limit: int = 20,
        cursor: str | None = None,
        label: str | None = None,
    ) -> EntityPage:
        pub_ref = self._publications.document(document_id(publication))
        if not pub_ref.get(field_paths=["name"]).exists:
            raise UnknownPublication(publication)
        entities = pub_ref.collection(ENTITIES)
        query: firestore.Query = entities  # type: ignore[assignment]
        if label is not None:
            query = query.where(filter=FieldFilter("label", "==", label))
        # The document id (= the key) last, explicitly, so a cursor can name it: entities
        # tied on count and text (e.g. "Paris" GPE and "Paris" ORG) are neither skipped nor
        # repeated across pages.
        query = (
            query.order_by("count", direction=firestore.Query.DESCENDING)
            .order_by("text")
            .order_by(FieldPath.document_id())
        )
        if cursor is not None:
            after = decode_cursor(cursor)
            query = query.start_after(
                {
                    "count": after.count,
                    "text": after.text,
                    FieldPath.document_id(): entities.document(document_id(after.key)),
                }
            )
        snapshots = list(query.limit(limit + 1).stream())
        page = []
        for snapshot in snapshots[:limit]:
            data = snapshot.to_dict() or {}
            page.append(
                EntityCount(name_of(snapshot.id), data["text"], data["label"], data["count"])
            )
        next_cursor = encode_cursor(page[-1]) if len(snapshots) > limit else None
        return EntityPage(publication, page, next_cursor)

    def counted(self, ids: Sequence[str]) -> set[str]:
        by_path = {f"{ARTICLES}/{document_id(i)}": i for i in ids}
        paths = list(by_path)
        found: set[str] = set()
        for start in range(0, len(paths), GET_CHUNK):
            refs = [self._client.document(p) for p in paths[start : start + GET_CHUNK]]
            # An empty field mask: existence is all we need, not the marker's fields.
            for snapshot in self._client.get_all(refs, field_paths=[]):
                if snapshot.exists:
                    found.add(by_path[snapshot.reference.path])
        return found

    def close(self) -> None:
        self._client.close()


def open_firestore_store(settings: Settings, **options: Any) -> FirestoreStore:
    """A FirestoreStore for the project, database and (optional) emulator of `settings`.

    `options` go to FirestoreStore (tests tune the retry schedule with them).
    """
    if not settings.firestore_project:
        raise ConfigError(
            "store = firestore needs a project id: set INGEST_FIRESTORE_PROJECT "
            "(any id, e.g. demo-ingest, when using the emulator)"
        )
    if settings.firestore_emulator_host:
        # The client library reads the emulator address only from this environment
        # variable (it then uses an insecure channel and no credentials). Settings are the
        # one configuration source of the mesh, so the setting feeds the variable here,
        # in the process that opens the store, rather than asking every launcher to
        # export a second, Google-specific variable.
        os.environ["FIRESTORE_EMULATOR_HOST"] = settings.firestore_emulator_host
    elif os.environ.get("FIRESTORE_EMULATOR_HOST"):
        log.warning(
            "FIRESTORE_EMULATOR_HOST is set in the environment: the Firestore client will "
            "use that emulator although INGEST_FIRESTORE_EMULATOR_HOST is empty",
            extra={"emulator": os.environ["FIRESTORE_EMULATOR_HOST"]},
        )
    client = firestore.Client(
        project=settings.firestore_project, database=settings.firestore_database
    )
    return FirestoreStore(client, **options)
