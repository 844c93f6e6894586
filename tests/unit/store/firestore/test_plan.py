"""store.firestore.plan: commits within the configured limits, an article never split.

Checked on the real emulator: the commits the writer really sends, and their counts.
"""

from __future__ import annotations

import pytest
from google.cloud.firestore_v1.types import firestore as firestore_types

from common.config import ConfigError, load_settings
from store.firestore import FirestoreStore
from store.firestore.plan import Article, CommitLimits, plan_commits
from tests.unit.store.firestore.support import (
    entity,
    entity_counts,
    extraction,
    planned,
    record_commits,
)


def writes_of(store: FirestoreStore, group: list[Article]) -> int:
    """How many writes the store's writer builds to commit `group`."""
    return len(store.writer.build(group, "token"))


def request_bytes(store: FirestoreStore, group: list[Article]) -> int:
    """The real size of the commit request the writer sends for `group`."""
    request = firestore_types.CommitRequest.pb()(
        database=store.writer._database, writes=store.writer.build(group, "0" * 32)
    )
    return request.ByteSize()


def test_a_configured_writes_cap_splits_commits_without_splitting_an_article(
    make_store, monkeypatch
):
    store = make_store(limits=CommitLimits(writes=500))
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
        assert writes_of(store, [by_id[i] for i in ids]) <= 500
        if next_ids:  # greedy: the next article would not have fitted
            group = [by_id[i] for i in [*ids, next_ids[0]]]
            assert writes_of(store, group) > 500
    # Every article in exactly one commit, in order: none split, none repeated.
    assert [i for ids in commits for i in ids] == [a.id for a in articles]

    counts = entity_counts(store, "Pub")
    assert counts[entity("Shared").key] == ("Shared", 60)
    assert len(counts) == 1 + 60 * 20
    assert store.publications()[0].articles == 60
    assert store.counted([a.id for a in articles]) == {a.id for a in articles}


def test_no_writes_cap_by_default_one_commit_holds_more_than_500_writes(make_store, monkeypatch):
    """The 500-writes cap was removed in 2023: 1,300 writes go in one commit (the emulator
    takes it, as Firestore does now), bounded by the request size only."""
    store = make_store()
    commits = record_commits(monkeypatch, store)
    articles = [
        extraction(f"a{i}", "Pub", *(entity(f"E{i}-{j}") for j in range(20))) for i in range(60)
    ]
    assert store.commit(articles) == [a.id for a in articles]
    assert len(commits) == 1
    assert writes_of(store, [planned(a) for a in articles]) == 60 + 1 + 60 * 20


def test_commits_are_split_by_request_bytes_and_the_estimate_bounds_the_real_size(
    make_store, monkeypatch
):
    limit = 64 * 1024
    store = make_store(limits=CommitLimits(request_bytes=limit))
    commits = record_commits(monkeypatch, store)
    articles = [
        extraction(
            f"article-{i}",
            "A publication with a long name",
            *(entity(f"Entity number {j} of article {i}", "PERSON") for j in range(30)),
        )
        for i in range(40)
    ]
    assert store.commit(articles) == [a.id for a in articles]
    assert len(commits) > 1
    by_id = {a.id: planned(a) for a in articles}
    # Sized by a writer that knows no entity document yet, as the one that sent them did
    # (a document it knows is written without its text: smaller).
    fresh = make_store(limits=CommitLimits(request_bytes=limit))
    sizes = [request_bytes(fresh, [by_id[i] for i in ids]) for ids in commits]
    # Every request within the limit; and full enough that the estimate is not wasteful.
    assert max(sizes) <= limit
    assert min(sizes[:-1]) > limit * 0.8
    assert [i for ids in commits for i in ids] == [a.id for a in articles]
    assert len(entity_counts(store, "A publication with a long name")) == 40 * 30


def test_an_article_bigger_than_one_commit_is_committed_alone_and_whole(make_store, monkeypatch):
    store = make_store(limits=CommitLimits(writes=500))
    commits = record_commits(monkeypatch, store)
    small = [extraction(f"s{i}", "Pub", entity("X")) for i in range(3)]
    huge = extraction("huge", "Pub", *(entity(f"H{j}") for j in range(600)))
    plan = plan_commits([planned(a) for a in [*small, huge, *small]], CommitLimits(writes=500))
    assert [len(g) for g in plan] == [3, 1, 3]

    assert store.commit([*small[:2], huge, small[2]]) == ["s0", "s1", "huge", "s2"]
    assert commits == [["s0", "s1"], ["huge"], ["s2"]]
    counts = entity_counts(store, "Pub")
    assert len(counts) == 601
    assert counts[entity("X").key] == ("X", 3)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("firestore_max_request_bytes", 10 * 1024 * 1024 + 1),
        ("firestore_max_request_bytes", 1000),
        ("firestore_max_transforms_per_document", 501),
        ("firestore_max_writes_per_commit", -1),
        ("firestore_document_writes_per_second", 0),
    ],
)
def test_limits_beyond_firestores_quotas_are_refused_at_start(setting, value):
    with pytest.raises(ConfigError, match=setting):
        load_settings({}, **{setting: value})


def test_the_defaults_are_firestores_quotas():
    settings = load_settings({})
    assert CommitLimits.of(settings) == CommitLimits(request_bytes=10 * 1024 * 1024, writes=0)
    assert settings.firestore_max_transforms_per_document == 500
    assert settings.firestore_document_writes_per_second == 1.0
