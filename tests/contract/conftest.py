"""Store factories: every contract test runs against each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.config import Settings, load_settings
from common.store import Store
from store import open_store

BACKENDS = ["sqlite", "firestore"]


@pytest.fixture(params=BACKENDS)
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings that open a fresh, empty store of one backend."""
    if request.param == "firestore":
        # Asked for lazily, so a run of the SQLite cases alone never starts the emulator.
        emulator = request.getfixturevalue("firestore_emulator")
        emulator.reset()
        # The settings carry the emulator's address, so spawned saver processes that call
        # open_store(settings) reach the same emulator without any inherited environment.
        return load_settings(
            {},
            data_dir=str(tmp_path),
            store="firestore",
            firestore_project=emulator.project,
            firestore_emulator_host=emulator.host,
        )
    return load_settings({}, data_dir=str(tmp_path), store=request.param)


@pytest.fixture
def store(store_settings: Settings) -> Iterator[Store]:
    opened = open_store(store_settings)
    yield opened
    opened.close()


@pytest.fixture
def reopen(store_settings: Settings) -> Callable[[], Store]:
    return lambda: open_store(store_settings)
