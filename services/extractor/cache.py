"""Texts already extracted on this host: a syndicated copy is counted without NER.

Wire-service copy is republished word for word by many publications. Each distinct text is
extracted once: its entities are kept by the digest of the text, and a copy posted to
another publication (or posted again) takes them from here. The counts are exactly those
of extracting the copy on its own (the same text through the same pipeline gives the same
entities), and each copy is still its own article: its own id, marker and counts.

Shared by every extractor of the host through one SQLite file in the data folder (WAL, so
readers never wait for a writer); bounded to `capacity` entries, the oldest dropped first.
It is a cache: `synchronous=OFF` (a power loss may lose recent entries, never give wrong
ones: an entry is written whole in one transaction), and any error reading or writing it
only costs an NER run. The digest covers the model, the skipped labels and the piece size,
so a change of configuration never reuses entries made under another. Hosts of a fleet
keep a cache each: a copy is extracted at most once per extractor host.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from common.messages import Entity
from common.sqlite import immediate

log = logging.getLogger("extractor")

SCHEMA = """
CREATE TABLE IF NOT EXISTS texts (
    digest BLOB PRIMARY KEY,
    entities BLOB NOT NULL
);
"""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Entity]).decode


class TextCache:
    def __init__(self, path: Path, capacity: int, configuration: Iterable[str]) -> None:
        self._capacity = capacity
        self._salt = "\x00".join(configuration).encode() + b"\x01"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.executescript(SCHEMA)

    def digest(self, text: str) -> bytes:
        digest = hashlib.blake2b(self._salt, digest_size=20)
        digest.update(text.encode())
        return digest.digest()

    def get(self, digests: Sequence[bytes]) -> dict[bytes, list[Entity]]:
        """The entities of those texts that are cached."""
        if not digests:
            return {}
        marks = ",".join("?" * len(digests))
        try:
            rows = self._conn.execute(
                f"SELECT digest, entities FROM texts WHERE digest IN ({marks})", list(digests)
            ).fetchall()
            return {digest: _decode(blob) for digest, blob in rows}
        except (sqlite3.Error, msgspec.DecodeError):
            log.warning("text cache unreadable; extracting", exc_info=True)
            return {}

    def put(self, entries: dict[bytes, list[Entity]]) -> None:
        """Keep these texts' entities, then drop the oldest beyond the capacity."""
        if not entries:
            return
        try:
            with immediate(self._conn) as conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO texts (digest, entities) VALUES (?, ?)",
                    [(digest, _encode(entities)) for digest, entities in entries.items()],
                )
                conn.execute(
                    "DELETE FROM texts WHERE rowid <= (SELECT max(rowid) FROM texts) - ?",
                    (self._capacity,),
                )
        except sqlite3.Error:
            log.warning("text cache not written", exc_info=True)

    def close(self) -> None:
        self._conn.close()
