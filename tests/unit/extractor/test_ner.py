"""The extractor's NER with the real model."""

from __future__ import annotations

from collections import Counter

import pytest

from common.config import Settings
from common.messages import entity_key
from services.extractor.ner import (
    DEFAULT_PIECE_CHARS,
    PIPE_PIECES,
    EntityExtractor,
    normalise,
    split_text,
)
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
    always_in_zones = EntityExtractor(extractor.nlp, extractor.skip_labels, vocabulary_strings=0)
    always_in_zones.extract(corpus[:50])
    before = len(extractor.nlp.vocab.strings)
    for start in range(50, 300, 50):
        always_in_zones.extract(corpus[start : start + 50])
    # Without memory zones, 250 unseen articles add thousands of strings.
    assert len(extractor.nlp.vocab.strings) - before < 100


def _unseen_texts(tag: str, count: int) -> list[str]:
    """Texts whose names no vocabulary has met: each adds a few strings of its own."""
    return [
        f"Mr Zq{tag}{i}ander met Wx{tag}{i}olin of Plimco{tag}{i} in Sydney on Monday."
        for i in range(count)
    ]


def test_the_vocabulary_grows_to_its_budget_then_stays_flat(extractor: EntityExtractor):
    strings = extractor.nlp.vocab.strings
    budgeted = EntityExtractor(extractor.nlp, extractor.skip_labels, vocabulary_strings=100)
    start = len(strings)
    texts = _unseen_texts("budget", 200)
    batches = [texts[i : i + 20] for i in range(0, len(texts), 20)]
    growth = []
    for batch in batches:
        budgeted.extract(batch)
        growth.append(len(strings) - start)
    # Outside zones first (the strings stay, so the tokenizer may cache them), up to the
    # budget and at most one call beyond it; then every call in a zone, the store flat.
    assert 100 <= growth[-1] < 100 + 20 * 10
    reached = next(i for i, grown in enumerate(growth) if grown >= 100)
    assert reached < len(batches) - 2
    assert growth[reached:] == [growth[reached]] * (len(batches) - reached)


def test_zones_or_not_the_entities_are_the_same(extractor: EntityExtractor, corpus):
    texts = [*corpus[:40], *_unseen_texts("same", 20)]
    outside = EntityExtractor(extractor.nlp, extractor.skip_labels, vocabulary_strings=10**9)
    inside = EntityExtractor(extractor.nlp, extractor.skip_labels, vocabulary_strings=0)
    assert outside.extract(texts) == inside.extract(texts)


def test_a_negative_vocabulary_budget_is_refused(extractor: EntityExtractor):
    with pytest.raises(ValueError, match="0 or more"):
        EntityExtractor(extractor.nlp, [], vocabulary_strings=-1)


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


# Long texts: extracted in pieces, counted as one.

PARAGRAPH = "Angela Merkel met Emmanuel Macron in Paris, then flew back to Berlin."


def _counts(found: list) -> Counter:
    return Counter({(e.label, e.text): e.count for e in found})


def test_a_text_over_piece_chars_counts_the_sum_of_its_pieces(extractor: EntityExtractor):
    (one,) = extractor.extract([PARAGRAPH])
    assert _counts(one)[("PERSON", "Angela Merkel")] == 1
    text = "\n\n".join([PARAGRAPH] * 40)
    # One paragraph per piece: each is the text extract() sees for PARAGRAPH alone.
    pieces = EntityExtractor(extractor.nlp, extractor.skip_labels, piece_chars=len(PARAGRAPH))
    assert len(text) > pieces.piece_chars
    (found,) = pieces.extract([text])
    assert _counts(found) == Counter({k: 40 * n for k, n in _counts(one).items()})
    assert len(found) == len(one)  # still one Entity per distinct entity


def test_long_real_articles_count_what_stock_spacy_finds_in_their_pieces(
    extractor: EntityExtractor, corpus, oracle
):
    text = "\n\n".join(list(dict.fromkeys(corpus))[:12])
    pieces = split_text(text, 5_000)
    assert len(pieces) >= 3
    (found,) = EntityExtractor(extractor.nlp, extractor.skip_labels, piece_chars=5_000).extract(
        [text]
    )
    want = sum((oracle.entities(piece) for piece in pieces), Counter())
    assert _as_oracle_sees_it(found) == want


def test_a_text_over_spacys_max_length_is_counted(extractor: EntityExtractor, monkeypatch):
    # spaCy's own limit, lowered so that the test stays fast: the text is 40x over it.
    monkeypatch.setattr(extractor.nlp, "max_length", 2_000)
    text = "\n\n".join([PARAGRAPH] * 1_100)
    with pytest.raises(ValueError, match="E088"):
        EntityExtractor(extractor.nlp, [], piece_chars=len(text)).extract([text])
    (found,) = EntityExtractor(extractor.nlp, extractor.skip_labels, 1_000).extract([text])
    assert _counts(found)[("GPE", "Paris")] == 1_100


def test_one_pipe_call_holds_a_bounded_number_of_characters(
    extractor: EntityExtractor, corpus, monkeypatch
):
    small = EntityExtractor(extractor.nlp, extractor.skip_labels, piece_chars=2_000)
    texts = ["\n\n".join(corpus[:30]), *corpus[30:60], "\n\n".join(corpus[60:75])]
    want = small.extract(texts)
    held: list[int] = []
    real_pipe = extractor.nlp.pipe

    def pipe(pieces, **kwargs):
        pieces = list(pieces)
        held.append(sum(map(len, pieces)))
        return real_pipe(pieces, **kwargs)

    monkeypatch.setattr(extractor.nlp, "pipe", pipe)
    assert small.extract(texts) == want
    assert len(held) > 1
    assert max(held) <= PIPE_PIECES * small.piece_chars
    # Every piece went through NER, once.
    assert sum(held) == sum(len(piece) for text in texts for piece in split_text(text, 2_000))


def test_piece_chars_must_be_positive(extractor: EntityExtractor):
    with pytest.raises(ValueError, match="at least 1"):
        EntityExtractor(extractor.nlp, [], piece_chars=0)


def test_the_default_piece_size_is_the_settings_default():
    assert Settings().max_piece_chars == DEFAULT_PIECE_CHARS
