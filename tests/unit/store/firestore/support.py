"""Helpers of the Firestore store's tests: articles to commit, and what the store committed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from common.messages import Entity, Extraction, entity_key
from store.firestore import FirestoreStore
from store.firestore.plan import Article, articles_of

LEDGER, TOKEN = "local", 1
MakeStore = Callable[..., FirestoreStore]


def entity(text: str, label: str = "ORG", count: int = 1) -> Entity:
    return Entity(entity_key(text, label), text, label, count)


def extraction(ident: str, pub: str, *entities: Entity) -> Extraction:
    return Extraction(ident, pub, list(entities), LEDGER, TOKEN)


def planned(ex: Extraction) -> Article:
    """`ex` as the store plans it, with its document ids."""
    (article,) = articles_of([ex])
    return article


def record_commits(monkeypatch: pytest.MonkeyPatch, store: FirestoreStore) -> list[list[str]]:
    """A spy, not a fake: note the article ids of every commit, then really send it."""
    commits: list[list[str]] = []
    commit_once = store.writer._commit_once

    def spy(pending: list[Article], token: str) -> None:
        commits.append([a.id for a in pending])
        commit_once(pending, token)

    monkeypatch.setattr(store.writer, "_commit_once", spy)
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
