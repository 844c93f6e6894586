"""store.firestore.reader: the composite indexes its queries need are the ones shipped.

The emulator ignores indexes; real Firestore refuses these queries without them. So the
expectation is not written by hand: the reader runs every kind of query it makes against
the emulator, a spy on the client's RunQuery call keeps each `StructuredQuery` really sent,
and the index each one needs is derived from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.cloud.firestore_v1.types import StructuredQuery

from store.firestore import FirestoreStore
from tests.unit.store.firestore.support import entity, extraction

INDEXES_FILE = Path(__file__).parents[4] / "firestore.indexes.json"

# (collection group, query scope, ((field path, order), ...)) as in firestore.indexes.json.
Index = tuple[str, str, tuple[tuple[str, str], ...]]


def sent_queries(monkeypatch: pytest.MonkeyPatch, store: FirestoreStore) -> list[StructuredQuery]:
    """A spy, not a fake: keep the query of every RunQuery call, then really make it."""
    sent: list[StructuredQuery] = []
    api = store.client._firestore_api
    run_query = api.run_query

    def spy(*args, request, **kwargs):
        sent.append(
            request["structured_query"] if isinstance(request, dict) else request.structured_query
        )
        return run_query(*args, request=request, **kwargs)

    monkeypatch.setattr(api, "run_query", spy)
    return sent


def equality_fields(where: StructuredQuery.Filter) -> list[str]:
    """The fields `where` compares for equality, in its order (no filter: none)."""
    if "composite_filter" in where:
        composite = where.composite_filter
        assert composite.op == StructuredQuery.CompositeFilter.Operator.AND, composite
        return [name for sub in composite.filters for name in equality_fields(sub)]
    if "field_filter" in where:
        field_filter = where.field_filter
        # Range, "in", array and unary filters change which index serves a query: teach
        # this derivation about them before the reader uses one.
        assert field_filter.op == StructuredQuery.FieldFilter.Operator.EQUAL, field_filter
        return [field_filter.field.field_path]
    assert "unary_filter" not in where, where
    return []


def needed_index(query: StructuredQuery) -> Index | None:
    """The composite index `query` needs; None when Firestore's single-field indexes do.

    Equality fields first, then the order_by fields with their directions. The document id
    (`__name__`) is in every index implicitly, ordered like the index's last field: it is
    listed only where the query orders it the other way.
    """
    (selector,) = query.from_
    scope = "COLLECTION_GROUP" if selector.all_descendants else "COLLECTION"
    fields = [(name, "ASCENDING") for name in equality_fields(query.where)]
    fields += [(order.field.field_path, order.direction.name) for order in query.order_by]
    if fields and fields[-1][0] == "__name__":
        by_name = fields.pop()
        if fields and fields[-1][1] != by_name[1]:
            fields.append(by_name)
    if len(fields) < 2:
        return None
    return (selector.collection_id, scope, tuple(fields))


def shipped_indexes() -> set[Index]:
    spec = json.loads(INDEXES_FILE.read_text())
    return {
        (
            index["collectionGroup"],
            index["queryScope"],
            tuple((f["fieldPath"], f["order"]) for f in index["fields"]),
        )
        for index in spec["indexes"]
    }


def test_the_shipped_indexes_are_exactly_those_the_queries_need(make_store, monkeypatch):
    store = make_store()
    store.commit(
        [
            extraction("a1", "Pub", entity("Qantas"), entity("Sydney", "GPE")),
            extraction("a2", "Pub", entity("Qantas"), entity("Telstra")),
        ]
    )
    sent = sent_queries(monkeypatch, store)

    # Every kind of query the reader makes: first pages and next pages, with and without
    # the label filter, and the publications.
    store.publications()
    page = store.top_entities("Pub", limit=1)
    store.top_entities("Pub", limit=1, cursor=page.next_cursor)
    page = store.top_entities("Pub", limit=1, label="ORG")
    store.top_entities("Pub", limit=1, cursor=page.next_cursor, label="ORG")
    assert len(sent) == 5

    needed = {index for query in sent if (index := needed_index(query)) is not None}
    assert needed == shipped_indexes()


def test_the_index_derivation():
    """`needed_index` on hand-made queries: what the test above relies on."""
    by_count = StructuredQuery.Order(
        field=StructuredQuery.FieldReference(field_path="count"),
        direction=StructuredQuery.Direction.DESCENDING,
    )
    by_key = StructuredQuery.Order(
        field=StructuredQuery.FieldReference(field_path="__name__"),
        direction=StructuredQuery.Direction.ASCENDING,
    )
    label_filter = StructuredQuery.Filter(
        field_filter=StructuredQuery.FieldFilter(
            field=StructuredQuery.FieldReference(field_path="label"),
            op=StructuredQuery.FieldFilter.Operator.EQUAL,
            value={"string_value": "ORG"},
        )
    )
    entities = [StructuredQuery.CollectionSelector(collection_id="entities")]

    # One field: served by its single-field index.
    assert needed_index(StructuredQuery(from_=entities, order_by=[by_count])) is None
    # Equality first; __name__ against the last field's direction is listed.
    assert needed_index(
        StructuredQuery(from_=entities, where=label_filter, order_by=[by_count, by_key])
    ) == (
        "entities",
        "COLLECTION",
        (("label", "ASCENDING"), ("count", "DESCENDING"), ("__name__", "ASCENDING")),
    )
