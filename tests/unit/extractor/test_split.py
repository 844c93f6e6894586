"""Cutting long texts into pieces, and pieces into nlp.pipe calls: pure functions, no model."""

from __future__ import annotations

import random
import time

import pytest

from services.extractor.ner import MAX_RUN_CHARS, piece_spans, pipe_groups, split_text


def assert_well_cut(text: str, limit: int) -> list[str]:
    """The promises of piece_spans: no piece over the limit or blank, pieces in order, and
    only whitespace left out between them (so they join back to the text, modulo the
    whitespace at the cuts)."""
    spans = piece_spans(text, limit)
    pieces = [text[start:end] for start, end in spans]
    assert all(0 < len(piece) <= limit for piece in pieces)
    assert all(piece.strip() for piece in pieces)
    edges = [0, *(edge for span in spans for edge in span), len(text)]
    gaps = [text[edges[i] : edges[i + 1]] for i in range(0, len(edges), 2)]
    assert all(gap == "" or gap.isspace() for gap in gaps), gaps
    assert all(start < end for start, end in spans)
    assert "".join(text.split()) == "".join("".join(pieces).split())
    return pieces


def test_a_blank_text_has_no_pieces():
    assert split_text("", 10) == []
    assert split_text(" \n\n\t ", 10) == []
    assert split_text(" " * 100, 10) == []


def test_a_text_within_the_limit_is_one_piece_unchanged():
    assert split_text("  Angela Merkel\n\nmet Macron.  ", 40) == [
        "  Angela Merkel\n\nmet Macron.  "
    ]
    assert split_text("x" * 10, 10) == ["x" * 10]


def test_the_limit_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        split_text("text", 0)


def test_paragraphs_first_packed_greedily():
    # Each paragraph has lines, sentences and spaces, all ignored while paragraphs suffice.
    paragraph = "One line. Two.\nThree four."  # 26 characters
    text = "\n\n".join([paragraph] * 5)
    assert assert_well_cut(text, 26) == [paragraph] * 5
    # Two paragraphs and the blank line between them fit in 54 characters, three do not.
    pair = f"{paragraph}\n\n{paragraph}"
    assert assert_well_cut(text, 54) == [pair, pair, paragraph]


def test_a_blank_line_may_hold_spaces_and_carriage_returns():
    text = "Alpha beta.\r\n\r\nGamma delta.\n \t\nEpsilon zeta."
    assert assert_well_cut(text, 15) == ["Alpha beta.", "Gamma delta.", "Epsilon zeta."]


def test_then_line_breaks_inside_a_paragraph_over_the_limit():
    long_paragraph = "First line. Still first.\nSecond line. More.\nThird line here."
    text = f"Short one.\n\n{long_paragraph}\n\nShort two."
    assert assert_well_cut(text, 30) == [
        "Short one.",
        "First line. Still first.",
        "Second line. More.",
        "Third line here.",
        "Short two.",
    ]


def test_then_sentence_ends_inside_a_line_over_the_limit():
    line = 'He came. She left! Did they? "Yes." (Quite.) Then Mr Brown and Ms Green went home'
    assert assert_well_cut(line, 20) == [
        "He came. She left!",
        'Did they? "Yes."',
        "(Quite.)",
        "Then Mr Brown and Ms",  # no sentence end left: any whitespace
        "Green went home",
    ]


def test_a_sentence_end_needs_final_punctuation_before_the_space():
    # "3.5" and "e.g" hold a full stop but not before a space; no cut there.
    text = "Rates rose 3.5 per cent e.g in Sydney today. Prices fell in Perth later on"
    assert assert_well_cut(text, 44) == [
        "Rates rose 3.5 per cent e.g in Sydney today.",
        "Prices fell in Perth later on",
    ]


def test_then_any_whitespace_inside_a_sentence_over_the_limit():
    sentence = "the quick brown fox jumps over the lazy dog"
    pieces = assert_well_cut(sentence, 12)
    assert pieces == ["the quick", "brown fox", "jumps over", "the lazy dog"]
    # Never inside a word while there is whitespace to cut at.
    assert set(" ".join(pieces).split()) == set(sentence.split())


def test_then_a_hard_cut_in_a_run_without_whitespace():
    assert assert_well_cut("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    text = "Before it. " + "y" * 23 + " after it."
    assert assert_well_cut(text, 10) == ["Before it.", "y" * 10, "y" * 10, "yyy", "after it."]


def test_random_texts_keep_every_promise():
    rng = random.Random(20261127)
    words = ["New", "York", "Sydney.", "a", "b!", "quite", "x" * 40, "end?", "(so.)", "é"]
    gaps = [" ", " ", " ", "  ", "\n", "\n\n", "\r\n", "\n \n", "\t", "\u2028", "\xa0"]
    for _ in range(300):
        parts = []
        for _ in range(rng.randint(0, 80)):
            parts += [rng.choice(words), rng.choice(gaps)]
        text = rng.choice(["", " ", "\n"]) + "".join(parts)
        limit = rng.randint(1, 120)
        pieces = assert_well_cut(text, limit)
        if text.strip() and len(text) > limit:
            assert all(p == p.strip() for p in pieces)


def test_real_news_text_is_cut_at_its_paragraphs(corpus):
    articles = list(dict.fromkeys(corpus))[:40]
    text = "\n\n".join(articles)
    limit = max(map(len, articles))
    pieces = assert_well_cut(text, limit)
    # Whole articles only: every piece is one article or several joined by blank lines.
    assert "\n\n".join(pieces) == text


def test_splitting_a_megabyte_takes_linear_time():
    # Whitespace runs are found once: no regex backtracking over long runs.
    for text in ("word " * 210_000, " " * 500_000 + "x" + " " * 500_000, "z" * 1_050_000):
        started = time.perf_counter()
        pieces = split_text(text, 20_000)
        assert time.perf_counter() - started < 5
        assert all(len(p) <= 20_000 for p in pieces)


def test_pipe_groups_hold_at_most_the_budget_in_order():
    pieces = ["a" * n for n in (5, 5, 5, 12, 3, 30, 1, 1)]
    groups = list(pipe_groups(pieces, [len(p) for p in pieces], 15))
    assert [p for g in groups for p in g] == pieces
    assert [[len(p) for p in g] for g in groups] == [[5, 5, 5], [12, 3], [30], [1, 1]]
    assert list(pipe_groups([], [], 15)) == []


def test_a_run_without_whitespace_is_cut_short_even_in_a_short_text():
    """spaCy's tokenizer is quadratic on such runs (4,000 emoji: ~1.8 s, 8,000: ~6.4 s)."""
    text = "Before the run. " + "\U0001f600" * (3 * MAX_RUN_CHARS + 10) + " After it."
    pieces = split_text(text, 20_000)
    assert len(text) < 20_000 and len(pieces) > 1
    assert max(len(piece) for piece in pieces) <= MAX_RUN_CHARS
    assert "".join("".join(piece.split()) for piece in pieces) == "".join(text.split())
    assert split_text("An ordinary sentence.", 20_000) == ["An ordinary sentence."]
