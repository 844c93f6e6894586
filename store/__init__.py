"""Store backends behind the interface in common.store; `open_store` picks one from settings."""

from __future__ import annotations

from common.config import Settings
from common.store import Store


def open_store(settings: Settings) -> Store:
    if settings.store == "sqlite":
        from store.sqlite import SqliteStore

        return SqliteStore(settings.sqlite_store_path)
    raise NotImplementedError(f"store {settings.store!r} is not available yet")
