"""Store factories: every contract test runs against each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.config import Settings, load_settings
from common.store import Store
from store import open_store

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings that open a fresh, empty store of one backend."""
    return load_settings({}, data_dir=str(tmp_path), store=request.param)


@pytest.fixture
def store(store_settings: Settings) -> Iterator[Store]:
    opened = open_store(store_settings)
    yield opened
    opened.close()


@pytest.fixture
def reopen(store_settings: Settings) -> Callable[[], Store]:
    return lambda: open_store(store_settings)
