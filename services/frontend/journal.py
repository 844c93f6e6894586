"""The intake journal: accepted articles, durable until a saver acknowledges them.

One SQLite file in WAL mode per frontend host. Frontend workers append (one transaction per
request, however many articles it holds); the ledger reads, re-sends and deletes. SQLite
serialises writers, so `seq` grows in commit order: a reader that has seen seq N has seen
every row committed before it. AUTOINCREMENT keeps seq from being reused after deletes.

The journal also holds the write gate: the pipeline state (accepting, stopped, draining)
with its sequence number, written by every frontend process of the host when it hears a new
state from control, and read by `append` inside its own transaction. Because SQLite
serialises writers, once the gate says "stopped" no append can commit after it, whatever a
worker heard or how long its request took; and a backlog counted in the same read snapshot
as a closed gate is final. That is what makes stop-writes and drain exact.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from common.control import State
from common.sqlite import connect, immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    publication TEXT NOT NULL,
    content TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,  -- dispatches: they set the lease's backoff
    failures INTEGER NOT NULL DEFAULT 0   -- evidence against the article: dead letter at max
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
CREATE TABLE IF NOT EXISTS gate (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    state TEXT NOT NULL,
    seq INTEGER NOT NULL
);
-- Closed until a frontend process has heard the pipeline state: fail closed.
INSERT OR IGNORE INTO gate VALUES (1, 'stopped', -1);
"""

ACCEPTING = "accepting"


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
    accepted_at: float  # time.time() of the frontend process that journaled it


class Backlog(msgspec.Struct, frozen=True):
    """The rows waiting, read in one snapshot with the gate: with the gate closed at
    `gate_seq`, no row can join them."""

    articles: int
    oldest_age_seconds: float | None
    gate_state: str
    gate_seq: int


class WritesClosed(Exception):
    """The gate is not accepting: nothing was journaled."""

    def __init__(self, state: str) -> None:
        super().__init__(f"writes are {state}")
        self.state = state


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
        with immediate(self._conn) as conn:
            _migrate(conn)
            for statement in SCHEMA.split(";"):
                conn.execute(statement)
        self._now = now

    # -- frontend side ------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> int:
        """Journal the entries in one transaction, if the gate is open (else WritesClosed);
        an id already journaled is kept as is. Returns the number of new rows."""
        now = self._now()
        with immediate(self._conn) as conn:
            (state,) = conn.execute("SELECT state FROM gate").fetchone()
            if state != ACCEPTING:
                raise WritesClosed(state)
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
        self._conn.execute("BEGIN")  # one read snapshot for the rows and the gate
        try:
            # Two queries, each cheap at any backlog: count(*) alone reads the id index
            # (SQLite counts its pages' cells), and the first seq is the first journaled.
            # count(*) with min(accepted_at) in one SELECT read every row, contents and all:
            # 15 ms at 30,000 rows, every lease scan (bench/journal_backlog.py).
            (count,) = self._conn.execute("SELECT count(*) FROM journal").fetchone()
            first = self._conn.execute(
                "SELECT accepted_at FROM journal ORDER BY seq LIMIT 1"
            ).fetchone()
            oldest = None if first is None else first[0]
            state, seq = self._conn.execute("SELECT state, seq FROM gate").fetchone()
        finally:
            self._conn.execute("COMMIT")
        age = None if oldest is None else max(0.0, self._now() - oldest)
        return Backlog(count, age, state, seq)

    # -- the gate ---------------------------------------------------------------------------

    def set_gate(self, state: str, seq: int) -> int:
        """Record a pipeline state heard from control, unless a newer one is there already
        (states may reach the host's processes out of order). Returns the gate's seq."""
        with immediate(self._conn) as conn:
            conn.execute("UPDATE gate SET state = ?, seq = ? WHERE seq < ?", (state, seq, seq))
            (current,) = conn.execute("SELECT seq FROM gate").fetchone()
        return current

    def gate(self) -> tuple[str, int]:
        state, seq = self._conn.execute("SELECT state, seq FROM gate").fetchone()
        return state, seq

    # -- ledger side --------------------------------------------------------------------

    def last_seq(self) -> int:
        """The seq of the newest row (0 for none): O(log n), from the primary key."""
        (high,) = self._conn.execute("SELECT max(seq) FROM journal").fetchone()
        return high or 0

    def after(self, seq: int, limit: int) -> list[Row]:
        """Rows committed after `seq`, oldest first."""
        rows = self._conn.execute(
            "SELECT seq, id, publication, content, attempts, accepted_at FROM journal "
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
                    "SELECT seq, id, publication, content, attempts, accepted_at FROM journal "
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

    def record_failures(self, ids: Sequence[str]) -> dict[str, int]:
        """One more failure for each article (evidence against it); their failure counts."""
        with immediate(self._conn) as conn:
            conn.executemany(
                "UPDATE journal SET failures = failures + 1 WHERE id = ?", [(i,) for i in ids]
            )
        counts: dict[str, int] = {}
        for part in _chunks(ids):
            marks = ",".join("?" * len(part))
            counts.update(
                self._conn.execute(
                    f"SELECT id, failures FROM journal WHERE id IN ({marks})", part
                ).fetchall()
            )
        return counts

    def delete(self, ids: Sequence[str]) -> int:
        """Forget acknowledged articles wherever they are: the journal, or dead letters (an
        ack that arrives after an article was set aside means it was counted after all).
        Returns how many dead letters that cleared."""
        params = [(i,) for i in ids]
        with immediate(self._conn) as conn:
            conn.executemany("DELETE FROM journal WHERE id = ?", params)
            before = conn.total_changes
            conn.executemany("DELETE FROM dead_letters WHERE id = ?", params)
            cleared = conn.total_changes - before
        return cleared

    # -- dead letters ----------------------------------------------------------------------

    def bury(self, errors: dict[str, str]) -> None:
        """Move rows out of the journal into dead letters, with the reason for each."""
        now = self._now()
        with immediate(self._conn) as conn:
            for ident, error in errors.items():
                conn.execute(
                    "INSERT OR REPLACE INTO dead_letters "
                    "SELECT id, publication, content, accepted_at, failures, ?, ? "
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


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a journal written by an earlier version up to this schema (rows kept)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(journal)")}
    if columns and "failures" not in columns:
        conn.execute("ALTER TABLE journal ADD COLUMN failures INTEGER NOT NULL DEFAULT 0")


def _in_clause(ids: Sequence[str]) -> tuple[str, list[str]]:
    return f"WHERE id IN ({','.join('?' * len(ids))})", list(ids)


def _chunks(ids: Sequence[str], size: int = 500) -> list[list[str]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


class GateKeeper:
    """Applies the pipeline states a frontend process hears to its host's journal gate.

    It is a ControlLink's `apply`: it runs in the link's thread, so it opens a connection of
    its own on first use (a SQLite connection belongs to one thread). Once the gate holds
    the state, it confirms it, unless `running_since` says writes admitted under an older
    state are still running in this process.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        running_since: Callable[[int], int] = lambda seq: seq,
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._running_since = running_since
        self._journal: Journal | None = None

    def __call__(self, state: State) -> int:
        if self._journal is None:
            self._journal = Journal(self._path, synchronous=self._synchronous)
        self._journal.set_gate(state.name, state.seq)
        return self._running_since(state.seq)
