from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from common.config import Settings, load_settings
from common.control import ControlUnavailable, MeshSummary
from services.frontend.http.app import create_app
from services.frontend.journal import Journal
from store.sqlite import SqliteStore

KEY = "test-key-0123456789abcdef"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {}, data_dir=str(tmp_path), api_keys=[KEY], max_batch=5, max_body_bytes=4096
    )


@pytest.fixture
def journal(settings: Settings) -> Iterator[Journal]:
    journal = Journal(settings.journal_path)
    journal.set_gate("accepting", 1)  # as the control link does once it hears the state
    yield journal
    journal.close()


@pytest.fixture
def store(settings: Settings) -> Iterator[SqliteStore]:
    store = SqliteStore(settings.sqlite_store_path)
    yield store
    store.close()


class Gate:
    """The pipeline state as the frontend sees it, set by the test (the real one is
    common.control.ControlLink, exercised end to end in tests/e2e)."""

    def __init__(self) -> None:
        self.why = ""

    def accepting(self) -> tuple[bool, str]:
        return not self.why, self.why

    def heard_seq(self) -> int:
        return 1


@pytest.fixture
def gate() -> Gate:
    return Gate()


class MeshStatusBoard:
    """What the control server would say about the mesh, set by the test (the real source
    asks control; exercised end to end in tests/e2e)."""

    def __init__(self) -> None:
        self.summary: MeshSummary | None = MeshSummary(
            state="accepting",
            seq=1,
            processes={"frontend": 2, "ledger": 1, "extractor": 2, "saver": 1},
            backlog=3,
            oldest_age_seconds=0.5,
            dead_letters=0,
            redelivered=0,
            extracted=10,
            committed=7,
            acknowledged_per_second=4.5,
        )

    def __call__(self) -> MeshSummary:
        if self.summary is None:
            raise ControlUnavailable("no answer from the control server")
        return self.summary


@pytest.fixture
def board() -> MeshStatusBoard:
    return MeshStatusBoard()


@pytest.fixture
def client(settings, journal, store, gate, board) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(settings, journal, store, gate, board))


def journaled(journal: Journal) -> list[str]:
    return [row.id for row in journal.after(0, 10_000)]
