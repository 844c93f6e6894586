"""services.saver.commits: one commit of a group, poison isolated, the rest raised."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from common.messages import Entity, Extraction, entity_key
from services.saver.commits import commit
from store.sqlite import SqliteStore

PARIS = [Entity(entity_key("Paris", "GPE"), "Paris", "GPE", 1)]


class PoisonStore(SqliteStore):
    """A real SQLite store that refuses one article's values for good, as a store refuses an
    out-of-range value or an oversized document (injected: once the wire validates counts and
    sizes, no real article reaches such an error on SQLite; say so, as it is a stand-in)."""

    def __init__(self, path: Path, poison_id: str) -> None:
        super().__init__(path)
        self.poison_id = poison_id

    def commit(self, batch):
        if any(extraction.id == self.poison_id for extraction in batch):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return super().commit(batch)


def test_poison_is_set_aside_and_the_rest_of_the_group_commits(tmp_path: Path):
    store = PoisonStore(tmp_path / "store.sqlite3", poison_id="bad")
    batch = [Extraction(ident, "Pub", PARIS, "local", 1) for ident in ("a1", "bad", "a2")]
    outcome = commit(store, batch)
    assert [e.id for e in outcome.committed] == ["a1", "a2"]
    assert sorted(outcome.counted) == ["a1", "a2"]
    ((refused, error),) = outcome.poison
    assert refused.id == "bad" and error.startswith("OverflowError")
    assert [e.id for e in outcome.settled] == ["a1", "a2", "bad"]
    assert store.counted(["a1", "bad", "a2"]) == {"a1", "a2"}


def test_an_error_that_may_pass_is_raised_for_the_schedule(tmp_path: Path):
    """A locked store (a real lock, held by another connection) is not poison."""
    store = SqliteStore(tmp_path / "store.sqlite3")
    store._conn.execute("PRAGMA busy_timeout = 50")  # fail in 50 ms, not 30 s
    locker = sqlite3.connect(tmp_path / "store.sqlite3")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            commit(store, [Extraction("a1", "Pub", PARIS, "local", 1)])
    finally:
        locker.rollback()
        locker.close()
    assert commit(store, [Extraction("a1", "Pub", PARIS, "local", 1)]).counted == ["a1"]
