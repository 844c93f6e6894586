"""The intake journal: accepted articles, durable until a saver acknowledges them.

One SQLite file in WAL mode per frontend host. Frontend workers append (one transaction per
request, however many articles it holds); the ledger reads, re-sends and deletes. SQLite
serialises writers, so `seq` grows in commit order: a reader that has seen seq N has seen
every row committed before it. AUTOINCREMENT keeps seq from being reused after deletes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from common.sqlite import connect, immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    publication TEXT NOT NULL,
    content TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    publication TEXT NOT NULL,
    content TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""


class Entry(msgspec.Struct, frozen=True):
    id: str
    publication: str
    content: str


class Row(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    id: str
    publication: str
    content: str
    attempts: int


class Backlog(msgspec.Struct, frozen=True):
    articles: int
    oldest_age_seconds: float | None


class DeadLetter(msgspec.Struct, frozen=True):
    id: str
    publication: str
    attempts: int
    error: str
    failed_at: float


class Journal:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        now: Callable[[], float] = time.time,
    ) -> None:
        self._conn = connect(path, synchronous=synchronous, busy_timeout_s=10.0)
        self._conn.executescript(SCHEMA)
        self._now = now

    # -- frontend side ------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> int:
        """Journal the entries in one transaction; an id already journaled is kept as is.
        Returns the number of new rows."""
        now = self._now()
        with immediate(self._conn) as conn:
            inserted = conn.executemany(
                "INSERT OR IGNORE INTO journal (id, publication, content, accepted_at) "
                "VALUES (?, ?, ?, ?)",
                [(e.id, e.publication, e.content, now) for e in entries],
            ).rowcount
        return inserted

    def backlog_bound(self) -> int:
        """An upper bound of the rows waiting, from the seq range: O(log n), for every write."""
        # Two subqueries: SQLite answers a lone min() or max() from the primary key in
        # O(log n), but scans the whole table for min() and max() in one SELECT.
        low, high = self._conn.execute(
            "SELECT (SELECT min(seq) FROM journal), (SELECT max(seq) FROM journal)"
        ).fetchone()
        return 0 if low is None else high - low + 1

    def backlog(self) -> Backlog:
        count, oldest = self._conn.execute(
            "SELECT count(*), min(accepted_at) FROM journal"
        ).fetchone()
        return Backlog(count, None if oldest is None else max(0.0, self._now() - oldest))

    # -- ledger side --------------------------------------------------------------------

    def after(self, seq: int, limit: int) -> list[Row]:
        """Rows committed after `seq`, oldest first."""
        rows = self._conn.execute(
            "SELECT seq, id, publication, content, attempts FROM journal "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [Row(*r) for r in rows]

    def rows(self, ids: Sequence[str]) -> list[Row]:
        found: list[Row] = []
        for part in _chunks(ids):
            marks = ",".join("?" * len(part))
            found += [
                Row(*r)
                for r in self._conn.execute(
                    "SELECT seq, id, publication, content, attempts FROM journal "
                    f"WHERE id IN ({marks}) ORDER BY seq",
                    part,
                )
            ]
        return found

    def record_attempts(self, ids: Sequence[str]) -> None:
        with immediate(self._conn) as conn:
            conn.executemany(
                "UPDATE journal SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids]
            )

    def delete(self, ids: Sequence[str]) -> None:
        with immediate(self._conn) as conn:
            conn.executemany("DELETE FROM journal WHERE id = ?", [(i,) for i in ids])

    # -- dead letters ----------------------------------------------------------------------

    def bury(self, errors: dict[str, str]) -> None:
        """Move rows out of the journal into dead letters, with the reason for each."""
        now = self._now()
        with immediate(self._conn) as conn:
            for ident, error in errors.items():
                conn.execute(
                    "INSERT OR REPLACE INTO dead_letters "
                    "SELECT id, publication, content, accepted_at, attempts, ?, ? "
                    "FROM journal WHERE id = ?",
                    (error, now, ident),
                )
                conn.execute("DELETE FROM journal WHERE id = ?", (ident,))

    def dead_letter_count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._conn.execute(
            "SELECT id, publication, attempts, error, failed_at FROM dead_letters "
            "ORDER BY failed_at LIMIT ?",
            (limit,),
        )
        return [DeadLetter(*row) for row in rows]

    def revive(self, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or these ids) back in the journal with fresh attempts."""
        where, params = ("", []) if ids is None else _in_clause(ids)
        with immediate(self._conn) as conn:
            moved = conn.execute(
                "INSERT OR IGNORE INTO journal (id, publication, content, accepted_at) "
                f"SELECT id, publication, content, accepted_at FROM dead_letters {where}",
                params,
            ).rowcount
            conn.execute(f"DELETE FROM dead_letters {where}", params)
        return moved

    def close(self) -> None:
        self._conn.close()


def _in_clause(ids: Sequence[str]) -> tuple[str, list[str]]:
    return f"WHERE id IN ({','.join('?' * len(ids))})", list(ids)


def _chunks(ids: Sequence[str], size: int = 500) -> list[list[str]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]
