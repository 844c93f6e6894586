"""The extractor's NER with the real model."""

from __future__ import annotations

from collections import Counter

from common.messages import entity_key
from services.extractor.ner import EntityExtractor, normalise
from tests.oracle import entity_id


def test_entities_are_counted_normalised_and_filtered(extractor: EntityExtractor):
    text = (
        "Barack Obama met Angela Merkel in Berlin on Monday. Later, Barack  Obama flew to "
        "Paris with 300 officials."
    )
    (found,) = extractor.extract([text])
    by_text = {e.text: e for e in found}
    assert by_text["Barack Obama"].count == 2  # the double space is collapsed
    assert by_text["Barack Obama"].key == entity_key("Barack Obama", "PERSON")
    assert {"Berlin", "Paris"} <= set(by_text)
    labels = {e.label for e in found}
    assert not labels & {"DATE", "CARDINAL"}  # "Monday", "300" are skipped by default


def test_skip_labels_are_configuration(extractor: EntityExtractor):
    keep_dates = EntityExtractor(extractor.nlp, skip_labels=[])
    (found,) = keep_dates.extract(["The summit opened on Monday in Berlin."])
    assert "DATE" in {e.label for e in found}


def test_one_result_per_text_in_order(extractor: EntityExtractor, corpus):
    results = extractor.extract([*corpus[:5], "", *corpus[5:7]])
    assert len(results) == 8
    assert results[5] == []
    assert results[0] == extractor.extract([corpus[0]])[0]


def test_memory_zone_keeps_the_string_store_flat(extractor: EntityExtractor, corpus):
    extractor.extract(corpus[:50])
    before = len(extractor.nlp.vocab.strings)
    for start in range(50, 300, 50):
        extractor.extract(corpus[start : start + 50])
    # Without memory zones, 250 unseen articles add thousands of strings.
    assert len(extractor.nlp.vocab.strings) - before < 100


def test_normalise():
    assert normalise("  New \n York ") == "New York"


def _as_oracle_sees_it(found: list) -> Counter:
    return Counter({entity_id(e.text, e.label): e.count for e in found})


def test_the_extractor_counts_what_stock_spacy_finds(extractor: EntityExtractor, corpus, oracle):
    """NER-only and batched in memory zones, the product must count exactly the entities the
    full stock pipeline finds, filtered and normalised as documented (tests/oracle.py)."""
    texts = list(dict.fromkeys(corpus))
    for text, found in zip(texts, extractor.extract(texts), strict=True):
        assert _as_oracle_sees_it(found) == oracle.entities(text)


def test_the_oracle_notices_a_wrong_exclusion_list(extractor: EntityExtractor, corpus, oracle):
    counts_dates = EntityExtractor(extractor.nlp, skip_labels=["CARDINAL"])
    (found,) = counts_dates.extract([corpus[0]])
    assert _as_oracle_sees_it(found) != oracle.entities(corpus[0])
