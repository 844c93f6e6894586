"""Firestore-specific behaviour of store.firestore, against Google's real emulator.

The contract suite (tests/contract) proves the store behaves like SQLite; these tests pin
what only Firestore has: the 500-write commit limit, markers that fail a commit whole,
transient errors, and document ids for names that are not valid ids as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as api_exceptions

from common.config import ConfigError, load_settings
from common.messages import Entity, Extraction, entity_key
from store.emulator import FirestoreEmulator
from store.firestore import (
    MAX_WRITES,
    FirestoreStore,
    _Article,
    commit_writes,
    document_id,
    name_of,
    open_firestore_store,
    plan_commits,
)

ACK = "tcp://127.0.0.1:1"
MakeStore = Callable[..., FirestoreStore]


def entity(text: str, label: str = "ORG", count: int = 1) -> Entity:
    return Entity(entity_key(text, label), text, label, count)


def extraction(ident: str, pub: str, *entities: Entity) -> Extraction:
    return Extraction(ident, pub, list(entities), ACK)


def planned(ex: Extraction) -> _Article:
    return _Article(
        ex, document_id(ex.publication), document_id(ex.id), [e.key for e in ex.entities]
    )


@pytest.fixture
def make_store(firestore_emulator: FirestoreEmulator) -> Iterator[MakeStore]:
    """Opens stores on an emptied emulator database; several may share it (several savers)."""
    firestore_emulator.reset()
    settings = load_settings(
        {},
        store="firestore",
        firestore_project=firestore_emulator.project,
        firestore_emulator_host=firestore_emulator.host,
    )
    opened: list[FirestoreStore] = []

    def make(**options: Any) -> FirestoreStore:
        store = open_firestore_store(settings, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def record_commits(monkeypatch: pytest.MonkeyPatch, store: FirestoreStore) -> list[list[str]]:
    """A spy, not a fake: note the article ids of every commit, then really send it."""
    commits: list[list[str]] = []
    send = store._send

    def spy(pending: list[_Article], token: str) -> None:
        commits.append([a.id for a in pending])
        send(pending, token)

    monkeypatch.setattr(store, "_send", spy)
    return commits


def entity_counts(store: FirestoreStore, pub: str) -> dict[str, tuple[str, int]]:
    """Every entity of `pub`, walking the pages."""
    counts: dict[str, tuple[str, int]] = {}
    cursor = None
    while True:
        page = store.top_entities(pub, limit=500, cursor=cursor)
        counts.update((e.key, (e.text, e.count)) for e in page.entities)
        cursor = page.next_cursor
        if cursor is None:
            return counts


# -- commits of at most 500 writes ---------------------------------------------------------


def test_commits_are_split_at_500_writes_without_splitting_an_article(make_store, monkeypatch):
    store = make_store()
    commits = record_commits(monkeypatch, store)
    # Each article: its marker, one entity every article shares, 20 of its own; one
    # publication for all. A commit of n articles writes n + 1 + 1 + 20n: 23 fit in 500.
    articles = [
        extraction(f"a{i}", "Pub", entity("Shared"), *(entity(f"E{i}-{j}") for j in range(20)))
        for i in range(60)
    ]
    assert store.commit(articles) == [a.id for a in articles]

    assert [len(c) for c in commits] == [23, 23, 14]
    by_id = {a.id: planned(a) for a in articles}
    for ids, next_ids in zip(commits, [*commits[1:], []], strict=True):
        assert commit_writes([by_id[i] for i in ids]) <= MAX_WRITES
        if next_ids:  # greedy: the next article would not have fitted
            group = [by_id[i] for i in [*ids, next_ids[0]]]
            assert commit_writes(group) > MAX_WRITES
    # Every article in exactly one commit, in order: none split, none repeated.
    assert [i for ids in commits for i in ids] == [a.id for a in articles]

    counts = entity_counts(store, "Pub")
    assert counts[entity("Shared").key] == ("Shared", 60)
    assert len(counts) == 1 + 60 * 20
    assert store.publications()[0].articles == 60
    assert store.counted([a.id for a in articles]) == {a.id for a in articles}


def test_an_article_bigger_than_one_commit_is_committed_alone_and_whole(make_store, monkeypatch):
    store = make_store()
    commits = record_commits(monkeypatch, store)
    small = [extraction(f"s{i}", "Pub", entity("X")) for i in range(3)]
    huge = extraction("huge", "Pub", *(entity(f"H{j}") for j in range(600)))
    assert [len(g) for g in plan_commits([planned(a) for a in [*small, huge, *small]])] == [
        3,
        1,
        3,
    ]

    assert store.commit([*small[:2], huge, small[2]]) == ["s0", "s1", "huge", "s2"]
    assert commits == [["s0", "s1"], ["huge"], ["s2"]]
    counts = entity_counts(store, "Pub")
    assert len(counts) == 601
    assert counts[entity("X").key] == ("X", 3)


# -- markers that already exist ------------------------------------------------------------


def test_existing_markers_drop_only_their_articles(make_store, monkeypatch):
    store = make_store()
    store.commit([extraction("a1", "Pub", entity("Qantas")), extraction("a3", "Pub")])
    commits = record_commits(monkeypatch, store)

    batch = [
        extraction(i, "Pub", entity("Qantas"), entity(f"Only{i}")) for i in ["a1", "a2", "a3", "a4"]
    ]
    assert store.commit(batch) == ["a2", "a4"]

    # The first commit failed whole on the existing markers; the second carried the rest.
    assert commits == [["a1", "a2", "a3", "a4"], ["a2", "a4"]]
    counts = entity_counts(store, "Pub")
    assert counts[entity("Qantas").key] == ("Qantas", 3)  # a1 once, a2, a4
    assert entity("Onlya1").key not in counts  # a1 was counted before, without it
    assert entity("Onlya3").key not in counts
    assert counts[entity("Onlya2").key] == ("Onlya2", 1)
    assert store.publications()[0].articles == 4


def test_the_first_text_is_kept_across_savers(make_store):
    # Two stores = two saver processes: the second does not know the entity document exists,
    # guesses create(), fails on it, learns, and only increments.
    first, second = make_store(), make_store()
    assert first.commit([extraction("a1", "Pub", entity("Qantas"))]) == ["a1"]
    assert second.commit([extraction("a2", "Pub", entity("QANTAS"))]) == ["a2"]
    assert first.commit([extraction("a3", "Pub", entity("qantas"))]) == ["a3"]
    assert entity_counts(first, "Pub") == {entity("Qantas").key: ("Qantas", 3)}


def test_an_entity_document_deleted_behind_our_back_is_created_again(
    make_store, firestore_emulator
):
    store = make_store()
    store.commit([extraction("a1", "Pub", entity("Qantas"))])
    key = entity("Qantas").key
    store._client.document("publications", "Pub", "entities", key).delete()
    # The store believes the document exists (update precondition) and learns otherwise.
    assert store.commit([extraction("a2", "Pub", entity("QANTAS"))]) == ["a2"]
    assert entity_counts(store, "Pub") == {key: ("QANTAS", 1)}


# -- transient errors ----------------------------------------------------------------------


class FakeClock:
    """Time that passes only when the store sleeps: the retry schedule without the wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def inject(
    monkeypatch: pytest.MonkeyPatch,
    store: FirestoreStore,
    errors: list[Exception],
    *,
    after_sending: bool = False,
) -> None:
    """Make the next commits fail with `errors` (one each), before or after really sending."""
    send = store._send

    def faulty(pending: list[_Article], token: str) -> None:
        if errors and after_sending:
            send(pending, token)
        if errors:
            raise errors.pop(0)
        send(pending, token)

    monkeypatch.setattr(store, "_send", faulty)


def test_a_transient_error_is_retried(make_store, monkeypatch):
    """UNAVAILABLE once, then success: retried after a backoff, counted once.

    The emulator cannot be made to answer UNAVAILABLE on demand, so this one fault is
    injected (the error is raised instead of sending the first commit); the retry itself
    commits to the real emulator.
    """
    clock = FakeClock()
    store = make_store(sleep=clock.sleep, clock=clock)
    inject(monkeypatch, store, [api_exceptions.ServiceUnavailable("injected")])
    assert store.commit([extraction("a1", "Pub", entity("Qantas"))]) == ["a1"]
    assert len(clock.sleeps) == 1 and 0.05 <= clock.sleeps[0] <= 0.15
    assert entity_counts(store, "Pub") == {entity("Qantas").key: ("Qantas", 1)}


def test_a_commit_applied_before_its_error_is_not_applied_twice(make_store, monkeypatch):
    """DEADLINE_EXCEEDED after the server applied the commit (injected, as above).

    The retry finds the markers, sees its own commit token on them, and reports the
    articles as counted by this call without adding their counts again.
    """
    clock = FakeClock()
    store = make_store(sleep=clock.sleep, clock=clock)
    inject(monkeypatch, store, [api_exceptions.DeadlineExceeded("injected")], after_sending=True)
    batch = [extraction("a1", "Pub", entity("Qantas")), extraction("a2", "Pub", entity("X"))]
    assert store.commit(batch) == ["a1", "a2"]
    assert entity_counts(store, "Pub")[entity("Qantas").key] == ("Qantas", 1)
    assert store.publications()[0].articles == 2
    # Another saver's marker is not mistaken for ours.
    assert make_store().commit(batch) == []


def test_transient_errors_are_retried_for_a_bounded_time_then_raised(make_store, monkeypatch):
    """Always UNAVAILABLE (injected): exponential backoff until retry_seconds, then raise."""
    clock = FakeClock()
    store = make_store(sleep=clock.sleep, clock=clock, retry_seconds=20.0)
    errors: list[Exception] = [api_exceptions.ServiceUnavailable("down") for _ in range(100)]
    inject(monkeypatch, store, errors)
    with pytest.raises(api_exceptions.ServiceUnavailable):
        store.commit([extraction("a1", "Pub", entity("Qantas"))])
    assert clock.now <= 20.0
    assert 4 <= len(clock.sleeps) < 20
    assert clock.sleeps[3] > clock.sleeps[0]  # growing (jitter is at most 1.5x vs 2x growth)
    assert store.counted(["a1"]) == set()


def test_a_permanent_error_is_not_retried(make_store, monkeypatch):
    """PERMISSION_DENIED (injected) is raised at once: waiting cannot fix it."""
    clock = FakeClock()
    store = make_store(sleep=clock.sleep, clock=clock)
    inject(monkeypatch, store, [api_exceptions.PermissionDenied("no")])
    with pytest.raises(api_exceptions.PermissionDenied):
        store.commit([extraction("a1", "Pub", entity("Qantas"))])
    assert clock.sleeps == []


def test_a_precondition_failure_nothing_explains_is_raised_after_one_read(make_store, monkeypatch):
    """FAILED_PRECONDITION with no marker and no wrong guess (injected): not a conflict.

    One batched read shows nothing to drop or learn, so sending again cannot help: raised.
    """
    store = make_store()
    sends: list[int] = []
    send = store._send

    def failing(pending: list[_Article], token: str) -> None:
        sends.append(len(pending))
        if len(sends) == 1:
            raise api_exceptions.FailedPrecondition("injected")
        send(pending, token)

    monkeypatch.setattr(store, "_send", failing)
    with pytest.raises(api_exceptions.FailedPrecondition):
        store.commit([extraction("a1", "Pub", entity("Qantas"))])
    assert sends == [1]
    assert store.counted(["a1"]) == set()


# -- document ids ------------------------------------------------------------------------------

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


def test_a_project_is_required():
    with pytest.raises(ConfigError, match="INGEST_FIRESTORE_PROJECT"):
        open_firestore_store(load_settings({}, store="firestore"))


# -- indexes -------------------------------------------------------------------------------


def test_the_shipped_indexes_cover_the_queries():
    """The emulator ignores indexes; real Firestore refuses these queries without them."""
    spec = json.loads((Path(__file__).parents[3] / "firestore.indexes.json").read_text())
    indexes = {
        (
            i["collectionGroup"],
            i["queryScope"],
            tuple((f["fieldPath"], f["order"]) for f in i["fields"]),
        )
        for i in spec["indexes"]
    }
    count_text = (("count", "DESCENDING"), ("text", "ASCENDING"))
    assert ("entities", "COLLECTION", count_text) in indexes  # top_entities
    assert ("entities", "COLLECTION", (("label", "ASCENDING"), *count_text)) in indexes
    assert (
        "publications",
        "COLLECTION",
        (("articles", "DESCENDING"), ("name", "ASCENDING")),
    ) in indexes
