"""Long articles on the real mesh: an article over spaCy's max_length (1,000,000 characters)
but within the HTTP body limit is counted, once, from its pieces; never dead-lettered."""

from __future__ import annotations

import json
from collections import Counter

from services.frontend.journal import Journal
from store import open_store
from tests.e2e.conftest import start_mesh, stop_mesh
from tests.oracle import Oracle, entity_id

SPACY_MAX_LENGTH = 1_000_000
TARGET_CHARS = 1_000_500
BLANK_LINE = "\n\n"


def repeated(unit: str, chars: int) -> tuple[str, int]:
    """Copies of `unit` joined by blank lines, just over `chars` characters; and how many."""
    copies = -(-(chars + len(BLANK_LINE)) // (len(unit) + len(BLANK_LINE)))
    return BLANK_LINE.join([unit] * copies), copies


def documented_pieces(unit: str, copies: int, piece_chars: int) -> list[str]:
    """The pieces the README promises for copies of one paragraph joined by blank lines:
    whole paragraphs, as many as fit in piece_chars, in order. Written from the documented
    rule, not taken from the product."""
    per_piece = (piece_chars + len(BLANK_LINE)) // (len(unit) + len(BLANK_LINE))
    full, rest = divmod(copies, per_piece)
    pieces = [BLANK_LINE.join([unit] * per_piece)] * full
    return pieces + ([BLANK_LINE.join([unit] * rest)] if rest else [])


def stored_entities(store, publication: str) -> Counter:
    page = store.top_entities(publication, limit=100_000)
    return Counter({entity_id(e.text, e.label): e.count for e in page.entities})


def test_an_article_over_spacys_limit_is_counted_from_its_pieces(tmp_path, corpus, oracle: Oracle):
    running = start_mesh(tmp_path)
    try:
        unit = corpus[0]  # a real news article: 1,826 characters, 16 distinct entities
        text, copies = repeated(unit, TARGET_CHARS)
        long = {"publication": "Long Reads", "content": text, "id": "long"}
        short = {"publication": "Short Reads", "content": corpus[1], "id": "short"}
        # Over spaCy's limit (the old extractor failed it with E088 on every attempt), and
        # under the body limit whatever JSON escaping the client chooses.
        assert len(text) > SPACY_MAX_LENGTH
        assert len(json.dumps([long, short]).encode()) < running.settings.max_body_bytes

        answer = running.post([long, short])
        assert answer.status_code == 202, answer.text
        # ~20 s of NER on a quiet machine; a re-send after a lease would count once anyway.
        running.wait_drained(timeout=600)

        journal = Journal(running.settings.journal_path)
        try:
            assert journal.dead_letter_count() == 0
        finally:
            journal.close()
        pieces = documented_pieces(unit, copies, running.settings.max_piece_chars)
        want_long = sum((oracle.entities(piece) for piece in pieces), Counter())
        # This text's pieces are whole copies, and stock spaCy finds in each exactly the
        # entities of its copies: so the article counts `copies` times the unit's entities.
        assert want_long == Counter({k: n * copies for k, n in oracle.entities(unit).items()})
        store = open_store(running.settings)
        try:
            assert store.counted(["long", "short"]) == {"long", "short"}
            publications = {p.name: p.articles for p in store.publications(limit=100)}
            assert publications == {"Long Reads": 1, "Short Reads": 1}
            assert stored_entities(store, "Long Reads") == want_long
            assert stored_entities(store, "Short Reads") == oracle.entities(corpus[1])
        finally:
            store.close()
    finally:
        stop_mesh(running)
