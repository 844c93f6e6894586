"""SQLite conventions shared by the intake journal and the embedded store."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(
    path: Path, *, synchronous: str = "FULL", busy_timeout_s: float = 30.0
) -> sqlite3.Connection:
    """A WAL-mode connection in autocommit mode: transactions are opened explicitly.

    FULL survives a power loss, NORMAL only a process crash (docs/measurements.md: ~3,300 vs ~15,000
    single-row commits/s here); both stores of accepted work default to FULL.
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    # Article text and counts are this user's only; SQLite gives its -wal and -shm files
    # the database file's mode.
    with contextlib.suppress(PermissionError):
        os.chmod(path, 0o600)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: the write lock is taken up front, so it cannot deadlock later."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
