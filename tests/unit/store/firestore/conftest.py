"""Firestore stores on Google's real emulator, emptied for each test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from common.config import load_settings
from store.emulator import FirestoreEmulator
from store.firestore import FirestoreStore, open_firestore_store
from tests.unit.store.firestore.support import MakeStore


@pytest.fixture
def make_store(firestore_emulator: FirestoreEmulator) -> Iterator[MakeStore]:
    """Opens stores on an emptied emulator database; several may share it (several savers)."""
    firestore_emulator.reset()
    settings = load_settings(
        {},
        store="firestore",
        firestore_project=firestore_emulator.project,
        firestore_emulator_host=firestore_emulator.host,
    )
    opened: list[FirestoreStore] = []

    def make(**options: Any) -> FirestoreStore:
        store = open_firestore_store(settings, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
