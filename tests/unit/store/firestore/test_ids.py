"""store.firestore.ids: document ids for names that are not valid ids as they are."""

from __future__ import annotations

import re

from common.messages import entity_key
from store.firestore.ids import document_id, name_of
from tests.unit.store.firestore.support import entity, extraction

ODD_NAMES = [
    "a/b",
    "a%2Fb",  # must not collide with "a/b"
    ".",
    "..",
    "__name__",
    "__x__",
    "~tilde",
    " spaced  out ",
    "Zürich Zeitung",
    "東京新聞",
    "😀" * 200,  # 800 UTF-8 bytes, 2,400 once percent-encoded: the digest form
]


def test_document_ids_are_valid_stable_and_distinct():
    ids = [document_id(name) for name in ODD_NAMES]
    assert len(set(ids)) == len(ids)
    for name, doc_id in zip(ODD_NAMES, ids, strict=True):
        assert "/" not in doc_id
        assert doc_id not in (".", "..")
        assert not re.fullmatch(r"__.*__", doc_id)
        assert 0 < len(doc_id.encode()) <= 1500
        if not doc_id.startswith("~"):
            assert name_of(doc_id) == name
    assert document_id("ABC Science") == "ABC%20Science"
    assert document_id(entity_key("Qantas", "ORG")) == entity_key("Qantas", "ORG")
    assert document_id("😀" * 200).startswith("~")


def test_odd_publication_names_and_article_ids_round_trip(make_store):
    store = make_store()
    batch = [
        extraction(f"id/{i}/../x", name, entity("Qantas"), entity(name[:50], "PERSON"))
        for i, name in enumerate(ODD_NAMES)
    ]
    assert store.commit(batch) == [a.id for a in batch]
    assert sorted(p.name for p in store.publications()) == sorted(ODD_NAMES)
    for name in ODD_NAMES:
        page = store.top_entities(name)
        assert page.publication == name
        assert sorted(e.text for e in page.entities) == sorted(["Qantas", name[:50]])
    assert store.counted([a.id for a in batch] + ["id/none"]) == {a.id for a in batch}
    assert store.commit(batch) == []
