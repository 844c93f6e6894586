"""The store contract: both backends must pass every test here."""

from __future__ import annotations

import base64
import multiprocessing
from collections import Counter

import msgspec
import pytest

from common.config import Settings
from common.messages import Entity, Extraction, entity_key
from common.store import InvalidCursor, UnknownPublication
from store import open_store

LEDGER, TOKEN = "local", 1


def entity(text: str, label: str = "ORG", count: int = 1) -> Entity:
    return Entity(entity_key(text, label), text, label, count)


def extraction(ident: str, pub: str, *entities: Entity) -> Extraction:
    return Extraction(ident, pub, list(entities), LEDGER, TOKEN)


def test_commit_counts_articles_and_entities(store):
    counted = store.commit(
        [
            extraction("a1", "Pub", entity("Qantas", count=2), entity("Sydney", "GPE")),
            extraction("a2", "Pub", entity("Qantas")),
            extraction("b1", "Other", entity("Qantas")),
        ]
    )
    assert sorted(counted) == ["a1", "a2", "b1"]
    page = store.top_entities("Pub")
    assert [(e.text, e.label, e.count) for e in page.entities] == [
        ("Qantas", "ORG", 3),
        ("Sydney", "GPE", 1),
    ]
    assert page.next_cursor is None
    assert [(p.name, p.articles) for p in store.publications()] == [("Pub", 2), ("Other", 1)]
    assert store.counted(["a1", "a2", "b1", "zz"]) == {"a1", "a2", "b1"}


def test_redelivered_articles_add_nothing(store):
    first = extraction("a1", "Pub", entity("Qantas"))
    assert store.commit([first]) == ["a1"]
    assert store.commit([first, extraction("a2", "Pub", entity("Qantas"))]) == ["a2"]
    assert store.commit([first]) == []
    assert store.top_entities("Pub").entities[0].count == 2
    assert store.publications()[0].articles == 2


def test_the_same_article_twice_in_one_commit_counts_once(store):
    one = extraction("a1", "Pub", entity("Qantas"))
    assert store.commit([one, one]) == ["a1"]
    assert store.top_entities("Pub").entities[0].count == 1


def test_case_variants_share_a_key_and_the_first_text_is_kept(store):
    store.commit([extraction("a1", "Pub", entity("Qantas"))])
    store.commit([extraction("a2", "Pub", entity("QANTAS"))])
    (only,) = store.top_entities("Pub").entities
    assert (only.text, only.count) == ("Qantas", 2)


def test_order_is_count_desc_then_text(store):
    store.commit(
        [
            extraction(
                "a1",
                "Pub",
                entity("Zeta", count=2),
                entity("Alpha", count=2),
                entity("Mid", count=5),
                entity("Beta", count=1),
            )
        ]
    )
    texts = [e.text for e in store.top_entities("Pub").entities]
    assert texts == ["Mid", "Alpha", "Zeta", "Beta"]


def test_publications_by_articles_then_name(store):
    store.commit([extraction(f"b{i}", "B", entity("X")) for i in range(2)])
    store.commit([extraction(f"a{i}", "A", entity("X")) for i in range(2)])
    store.commit([extraction("c0", "C", entity("X"))])
    assert [p.name for p in store.publications()] == ["A", "B", "C"]
    assert [p.name for p in store.publications(limit=1)] == ["A"]


def test_pagination_walks_every_entity_once_in_order(store):
    # 25 entities, many tied on count: pages must neither skip nor repeat any.
    entities = [entity(f"E{i:02d}", count=1 + i % 3) for i in range(25)]
    store.commit([extraction("a1", "Pub", *entities)])
    expected = sorted(entities, key=lambda e: (-e.count, e.text))
    seen, cursor = [], None
    while True:
        page = store.top_entities("Pub", limit=4, cursor=cursor)
        assert len(page.entities) <= 4
        seen += page.entities
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [e.text for e in seen] == [e.text for e in expected]


def test_label_filter(store):
    store.commit(
        [
            extraction(
                "a1",
                "Pub",
                entity("Paris", "GPE", 3),
                entity("Qantas", "ORG", 2),
                entity("Lyon", "GPE", 1),
                entity("Paris", "ORG", 1),
            )
        ]
    )
    gpe = store.top_entities("Pub", label="GPE")
    assert [(e.text, e.count) for e in gpe.entities] == [("Paris", 3), ("Lyon", 1)]
    first = store.top_entities("Pub", limit=1, label="GPE")
    rest = store.top_entities("Pub", limit=1, label="GPE", cursor=first.next_cursor)
    assert [e.text for e in rest.entities] == ["Lyon"]
    assert store.top_entities("Pub", label="PERSON").entities == []


def test_unknown_publication_and_bad_cursor(store):
    with pytest.raises(UnknownPublication):
        store.top_entities("Nobody")
    store.commit([extraction("a1", "Pub", entity("X"))])
    with pytest.raises(InvalidCursor):
        store.top_entities("Pub", cursor="not-a-cursor!")


def cursor(count: int, text: str, key: str) -> str:
    """A cursor as the stores write one (msgpack, base64url), with any values."""
    raw = msgspec.msgpack.encode([count, text, key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def tied_entities(store) -> str:
    """Entities A (3), B and C (2 each), D (1) in Pub; returns B's key."""
    store.commit(
        [
            extraction(
                "a1",
                "Pub",
                entity("A", count=3),
                entity("B", count=2),
                entity("C", count=2),
                entity("D"),
            )
        ]
    )
    return entity_key("B", "ORG")


@pytest.mark.parametrize(
    ("count", "key"),
    [
        (2**63, None),  # past the signed 64-bit integers both stores keep
        (2**64 - 1, None),
        (-1, None),  # counts are never negative
        (2, ""),
        # Firestore orders by document id, which differs from these keys (percent-encoded
        # or digested, store/firestore/ids.py): the stores would page differently.
        (2, "caf\u00e9"),
        (2, "~"),
        (2, "a.b"),
        (2, "0" * 1501),
        (2, "abc\n"),
    ],
)
def test_a_cursor_the_stores_cannot_page_alike_is_invalid(store, count, key):
    b_key = tied_entities(store)
    with pytest.raises(InvalidCursor):
        store.top_entities("Pub", cursor=cursor(count, "B", b_key if key is None else key))


@pytest.mark.parametrize(
    ("count", "text", "key", "after"),
    [
        (2**63 - 1, "A", None, ["A", "B", "C", "D"]),  # the largest count: before everything
        (0, "", None, []),
        # B's key (38ecd3...) is after "-" and "0", before "Z-9" and "g", on both stores.
        (2, "B", "-", ["B", "C", "D"]),
        (2, "B", "0", ["B", "C", "D"]),
        (2, "B", "Z-9", ["C", "D"]),
        (2, "B", "g", ["C", "D"]),
        (2, "B", "0" * 1500, ["B", "C", "D"]),
        (1, "\x00", "k", ["D"]),
    ],
)
def test_a_cursor_of_any_valid_values_pages_alike(store, count, text, key, after):
    b_key = tied_entities(store)
    page = store.top_entities("Pub", cursor=cursor(count, text, b_key if key is None else key))
    assert [e.text for e in page.entities] == after


def test_counts_survive_reopening(store, reopen):
    store.commit([extraction("a1", "Pub", entity("X"))])
    again = reopen()
    try:
        assert again.top_entities("Pub").entities[0].count == 1
        assert again.commit([extraction("a1", "Pub", entity("X"))]) == []
    finally:
        again.close()


def _saver_process(settings: Settings, worker: int, articles: int) -> None:
    store = open_store(settings)
    try:
        for start in range(0, articles, 10):
            # Overlapping ids between workers: each id must be counted by exactly one.
            batch = [
                extraction(f"shared{i}", "Pub", entity("Shared"), entity(f"W{worker}"))
                for i in range(start, start + 10)
            ]
            store.commit(batch)
    finally:
        store.close()


def test_concurrent_savers_give_exact_totals(store, store_settings):
    workers, articles = 4, 60
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_saver_process, args=(store_settings, w, articles))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    counts = Counter({e.text: e.count for e in store.top_entities("Pub", limit=100).entities})
    assert counts["Shared"] == articles
    assert sum(counts[f"W{w}"] for w in range(workers)) == articles
    assert store.publications()[0].articles == articles
