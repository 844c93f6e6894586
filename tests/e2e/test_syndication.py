"""Syndicated copies on the real mesh: each distinct text through NER about once, every copy
counted for its own publication exactly as if extracted on its own (the oracle)."""

from __future__ import annotations

import re

from tests.e2e.conftest import assert_exactly_counted

PUBLICATIONS = ["Wire Herald", "Wire Courier", "Wire Gazette"]
HITS = re.compile(r"^ingest_text_cache_hits_total (\S+)$", re.M)


def test_wire_copies_are_extracted_once_and_counted_for_every_publication(
    running_mesh, corpus, oracle
):
    texts = corpus[:20]
    accepted: dict[str, dict] = {}
    # Each text goes out to all three publications, one publication after another (as
    # wire copy is picked up), so most copies arrive after their text was extracted.
    for publication in PUBLICATIONS:
        batch = [{"publication": publication, "content": text} for text in texts]
        response = running_mesh.post(batch)
        assert response.status_code == 202, response.text
        accepted.update(zip(response.json()["ids"], batch, strict=True))
        running_mesh.wait_drained(timeout=120)
    assert len(accepted) == 60

    assert_exactly_counted(running_mesh, accepted, oracle, publications=set(PUBLICATIONS))
    metrics = running_mesh.http.get("/metrics").text
    hits = float(HITS.search(metrics).group(1))
    # The two later rounds (40 copies) came after their text was cached.
    assert hits >= 40, f"only {hits} copies were taken from the cache"
