"""store.firestore: opening the store from settings."""

from __future__ import annotations

import pytest

from common.config import ConfigError, load_settings
from store.firestore import open_firestore_store


def test_a_project_is_required():
    with pytest.raises(ConfigError, match="INGEST_FIRESTORE_PROJECT"):
        open_firestore_store(load_settings({}, store="firestore"))
