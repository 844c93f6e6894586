"""services.saver.audit: writes per document over a sliding window."""

from __future__ import annotations

import pytest

from common.messages import Entity, Extraction
from services.saver.audit import DocumentWrites, documents_of


def test_documents_of_a_commit_are_its_publications_and_their_entities():
    paris = Entity("a" * 24, "Paris", "GPE", 3)
    results = [
        Extraction("1", "Pub", [paris], "local", 1),
        Extraction("2", "Pub", [paris], "local", 1),
        Extraction("3", "Other", [], "local", 1),
    ]
    assert documents_of(results) == {
        "publications/Pub",
        f"publications/Pub/entities/{'a' * 24}",
        "publications/Other",
    }


def test_the_hottest_rate_is_over_the_window_only():
    now = [0.0]
    writes = DocumentWrites(window=10.0, clock=lambda: now[0])
    assert writes.hottest() == ("", 0.0)
    for _ in range(20):
        writes.record(["publications/Pub", "publications/Pub/entities/x"])
        writes.record(["publications/Pub"])
        now[0] += 1.0
    # Now t=20: the window (10, 20] holds t=11..19, 9 x 2 writes to the publication document.
    assert writes.hottest() == ("publications/Pub", pytest.approx(1.8))
    now[0] += 10.0
    assert writes.hottest() == ("", 0.0)
