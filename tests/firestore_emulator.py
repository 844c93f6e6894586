"""The Firestore emulator as a pytest fixture: one real emulator per test session.

Started on a free port by `store.emulator` (the launcher the benchmarks use too) and stopped,
whole process group, at the end of the session. Tests reset its data themselves
(`emulator.reset()`), so each starts from an empty database.

Where `gcloud` is missing, tests that need it skip with the reason; with CI set they fail
instead, because CI here has the emulator installed and must never skip the Firestore store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from store.emulator import FirestoreEmulator, gcloud_path


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    if gcloud_path() is None:
        reason = (
            "gcloud is not on PATH, so Google's Firestore emulator cannot be started "
            "(install google-cloud-cli-firestore-emulator with Java 17)"
        )
        if running_in_ci():
            pytest.fail(f"{reason}; CI is set, and CI must run the Firestore store tests")
        pytest.skip(reason)
    emulator = FirestoreEmulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
