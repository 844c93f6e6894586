"""Store backends behind the interface in common.store; `open_store` picks one from settings."""

from __future__ import annotations

from common.config import Settings
from common.store import Store


def open_store(settings: Settings) -> Store:
    if settings.store == "sqlite":
        from store.sqlite import SqliteStore

        return SqliteStore(settings.sqlite_store_path)
    if settings.store == "firestore":
        # Imported here: the Google client (grpc, protobuf) costs ~0.5 s and memory that a
        # SQLite-only mesh does not need.
        from store.firestore import open_firestore_store

        return open_firestore_store(settings)
    raise NotImplementedError(f"store {settings.store!r} is not available")
