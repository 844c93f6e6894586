"""store.firestore.plan: commits of at most 500 writes, an article never split.

Checked on the real emulator: the commits the writer really sends, and their counts.
"""

from __future__ import annotations

from store.firestore import FirestoreStore
from store.firestore.plan import MAX_WRITES, Article, plan_commits
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
        assert writes_of(store, [by_id[i] for i in ids]) <= MAX_WRITES
        if next_ids:  # greedy: the next article would not have fitted
            group = [by_id[i] for i in [*ids, next_ids[0]]]
            assert writes_of(store, group) > MAX_WRITES
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
