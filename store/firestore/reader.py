"""The read side of the Firestore store: publications, top entities, counted markers.

Reads go through the official client. Each query is built by a function of its own
(`publications_query`, `top_entities_query`) that returns it unrun, so what it asks of
Firestore can be seen without a database. On real Firestore these queries need the composite
indexes in `firestore.indexes.json` (the emulator does not enforce indexes);
tests/unit/store/firestore/test_reader.py derives the indexes from the queries the reader
sends and checks the file against them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter
from google.cloud.firestore_v1.base_document import DocumentSnapshot
from google.cloud.firestore_v1.collection import CollectionReference
from google.cloud.firestore_v1.field_path import FieldPath

from common.store import (
    EntityCount,
    EntityCursor,
    EntityPage,
    PublicationCount,
    UnknownPublication,
    decode_cursor,
    encode_cursor,
)
from store.firestore.ids import ENTITIES, PUBLICATIONS, document_id, marker_path, name_of

# Documents per batched read (one BatchGetDocuments call).
GET_CHUNK = 500


def existing_documents(
    client: firestore.Client, paths: Sequence[str], field_paths: list[str]
) -> Iterator[DocumentSnapshot]:
    """The snapshots of those of `paths` that exist, read in batches, with only `field_paths`."""
    for start in range(0, len(paths), GET_CHUNK):
        refs = [client.document(p) for p in paths[start : start + GET_CHUNK]]
        for snapshot in client.get_all(refs, field_paths=field_paths):
            if snapshot.exists:
                yield snapshot


def publications_query(client: firestore.Client, limit: int) -> firestore.Query:
    """Publications by article count, descending; ties by name."""
    return (
        client.collection(PUBLICATIONS)
        .order_by("articles", direction=firestore.Query.DESCENDING)
        .order_by("name")
        .limit(limit)
    )


def top_entities_query(
    entities: CollectionReference,
    limit: int,
    after: EntityCursor | None = None,
    label: str | None = None,
) -> firestore.Query:
    """At most `limit` entities of one publication by count desc, text, key; after `after`."""
    query: firestore.Query = entities  # type: ignore[assignment]
    if label is not None:
        query = query.where(filter=FieldFilter("label", "==", label))
    # The document id (= the key) last, explicitly, so a cursor can name it: entities tied
    # on count and text (e.g. "Paris" GPE and "Paris" ORG) are neither skipped nor repeated
    # across pages.
    query = (
        query.order_by("count", direction=firestore.Query.DESCENDING)
        .order_by("text")
        .order_by(FieldPath.document_id())
    )
    if after is not None:
        query = query.start_after(
            {
                "count": after.count,
                "text": after.text,
                FieldPath.document_id(): entities.document(document_id(after.key)),
            }
        )
    return query.limit(limit)


class Reader:
    """The queries of common.store.Store, answered from Firestore."""

    def __init__(self, client: firestore.Client) -> None:
        self._client = client

    def publications(self, limit: int = 100) -> list[PublicationCount]:
        return [
            PublicationCount(data["name"], data["articles"])
            for data in (
                snapshot.to_dict() or {}
                for snapshot in publications_query(self._client, limit).stream()
            )
        ]

    def top_entities(
        self,
        publication: str,
        limit: int = 20,
        cursor: str | None = None,
        label: str | None = None,
    ) -> EntityPage:
        pub_ref = self._client.collection(PUBLICATIONS).document(document_id(publication))
        if not pub_ref.get(field_paths=["name"]).exists:
            raise UnknownPublication(publication)
        after = decode_cursor(cursor) if cursor is not None else None
        # One more than the page: whether it comes back says whether there is a next page.
        query = top_entities_query(pub_ref.collection(ENTITIES), limit + 1, after, label)
        snapshots = list(query.stream())
        page = []
        for snapshot in snapshots[:limit]:
            data = snapshot.to_dict() or {}
            page.append(
                EntityCount(name_of(snapshot.id), data["text"], data["label"], data["count"])
            )
        next_cursor = encode_cursor(page[-1]) if len(snapshots) > limit else None
        return EntityPage(publication, page, next_cursor)

    def counted(self, ids: Sequence[str]) -> set[str]:
        """Which of these article ids carry a marker."""
        by_path = {marker_path(document_id(i)): i for i in ids}
        # An empty field mask: existence is all we need, not the marker's fields.
        return {
            by_path[snapshot.reference.path]
            for snapshot in existing_documents(self._client, list(by_path), field_paths=[])
        }
