"""The embedded store: one SQLite file, WAL mode, shared by every saver and reader process.

A commit is one IMMEDIATE transaction holding the article markers and the coalesced counts,
so a re-delivered article (its marker exists) adds nothing and a crash applies nothing.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from common.messages import Extraction
from common.sqlite import connect, immediate
from common.store import (
    EntityCount,
    EntityPage,
    PublicationCount,
    UnknownPublication,
    decode_cursor,
    encode_cursor,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS publications (
    name TEXT PRIMARY KEY,
    articles INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS publications_by_articles ON publications (articles DESC, name);
CREATE TABLE IF NOT EXISTS entities (
    publication TEXT NOT NULL,
    key TEXT NOT NULL,
    text TEXT NOT NULL,
    label TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (publication, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entities_by_count ON entities (publication, count DESC, text, key);
CREATE INDEX IF NOT EXISTS entities_by_label ON entities
    (publication, label, count DESC, text, key);
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    publication TEXT NOT NULL,
    entities INTEGER NOT NULL,
    committed_at REAL NOT NULL
) WITHOUT ROWID;
"""

UPSERT_PUBLICATION = """
INSERT INTO publications (name, articles) VALUES (?, ?)
ON CONFLICT (name) DO UPDATE SET articles = articles + excluded.articles
"""

# The first surface form seen for a key stays the displayed one.
UPSERT_ENTITY = """
INSERT INTO entities (publication, key, text, label, count) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (publication, key) DO UPDATE SET count = count + excluded.count
"""


class SqliteStore:
    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        # The saver acknowledges right after a commit and the ledger then forgets the
        # article, so the commit must survive a power loss: FULL.
        self._conn = connect(path, synchronous="FULL")
        self._now = now
        self._conn.executescript(SCHEMA)

    def commit(self, extractions: Sequence[Extraction]) -> list[str]:
        counted: list[str] = []
        articles: dict[str, int] = {}
        entities: dict[tuple[str, str], list] = {}
        now = self._now()
        with immediate(self._conn) as conn:
            for extraction in extractions:
                marker = conn.execute(
                    "INSERT OR IGNORE INTO articles VALUES (?, ?, ?, ?)",
                    (extraction.id, extraction.publication, len(extraction.entities), now),
                )
                if marker.rowcount == 0:
                    continue  # already counted: a re-delivery adds nothing
                counted.append(extraction.id)
                pub = extraction.publication
                articles[pub] = articles.get(pub, 0) + 1
                for entity in extraction.entities:
                    row = entities.get((pub, entity.key))
                    if row is None:
                        entities[(pub, entity.key)] = [
                            pub,
                            entity.key,
                            entity.text,
                            entity.label,
                            entity.count,
                        ]
                    else:
                        row[4] += entity.count
            conn.executemany(UPSERT_PUBLICATION, articles.items())
            conn.executemany(UPSERT_ENTITY, entities.values())
        return counted

    def publications(self, limit: int = 100) -> list[PublicationCount]:
        rows = self._conn.execute(
            "SELECT name, articles FROM publications ORDER BY articles DESC, name LIMIT ?",
            (limit,),
        )
        return [PublicationCount(name, articles) for name, articles in rows]

    def top_entities(
        self,
        publication: str,
        limit: int = 20,
        cursor: str | None = None,
        label: str | None = None,
    ) -> EntityPage:
        known = self._conn.execute(
            "SELECT 1 FROM publications WHERE name = ?", (publication,)
        ).fetchone()
        if known is None:
            raise UnknownPublication(publication)
        where = ["publication = ?"]
        params: list[object] = [publication]
        if label is not None:
            where.append("label = ?")
            params.append(label)
        if cursor is not None:
            after = decode_cursor(cursor)
            where.append("(count < ? OR (count = ? AND (text > ? OR (text = ? AND key > ?))))")
            params += [after.count, after.count, after.text, after.text, after.key]
        rows = self._conn.execute(
            f"SELECT key, text, label, count FROM entities WHERE {' AND '.join(where)} "
            "ORDER BY count DESC, text, key LIMIT ?",
            [*params, limit + 1],
        ).fetchall()
        page = [EntityCount(*row) for row in rows[:limit]]
        next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
        return EntityPage(publication, page, next_cursor)

    def counted(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        chunk = 500
        for start in range(0, len(ids), chunk):
            part = list(ids[start : start + chunk])
            marks = ",".join("?" * len(part))
            rows = self._conn.execute(f"SELECT id FROM articles WHERE id IN ({marks})", part)
            found.update(row[0] for row in rows)
        return found

    def poison(self, error: Exception) -> bool:
        # OperationalError is the file: locked, busy, disk full or unreadable. These come
        # from the values themselves (an integer out of range, a constraint).
        return isinstance(
            error, sqlite3.IntegrityError | sqlite3.DataError | OverflowError | ValueError
        )

    def close(self) -> None:
        self._conn.close()
