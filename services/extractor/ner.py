"""Named-entity extraction with spaCy: NER only, batched, in memory zones, long texts in pieces.

Only the `ner` component runs (it has its own tok2vec): the same entities as the full
pipeline at about 3x the speed (docs/measurements.md).

Memory zones and the tokenizer's cache. Every string a spaCy process meets stays in its
StringStore for good, unless the call ran inside `nlp.memory_zone()`, which frees what the
call added. But inside a zone spaCy's tokenizer caches nothing (its cache points at
lexemes the zone frees), so every word of every batch goes through the prefix, suffix and
infix rules again: measured, always-in-a-zone costs ~7-8% more CPU than NER without zones
(bench/RESULTS.md, "Memory zones, batches and queues"). So an extractor runs its first batches
outside any zone, letting the vocabulary and the tokenizer's cache (spaCy caps it at
10,000 chunks) fill with the commonest words, until the vocabulary has grown by
`vocabulary_strings` (the setting `extractor_vocabulary_strings`, 20,000 strings, ~12 MB);
from then on every call runs in a zone and the store stays flat. One call may overshoot
the budget by what it adds (at most `pipe_chars` characters' worth of new words).

Long texts. spaCy refuses a text over `nlp.max_length` (1,000,000 characters, error E088),
and its memory grows with the characters one call holds (docs/measurements.md: one
1,040,000-character doc peaked at 3.2 GB). So a text longer than `piece_chars` is cut into
pieces of at most that many characters (`piece_spans`: at blank lines, then line breaks,
then sentence ends, then any whitespace, then anywhere), the pieces are extracted like
articles, and their counts are summed into one result for the text. And one `nlp.pipe`
call never holds more than `PIPE_PIECES` pieces' worth of characters, whatever the batch:
measured (bench/RESULTS.md), the RSS of a call grows by ~0.75 KB per character it holds.
"""

from __future__ import annotations

import contextlib
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import spacy
from spacy.language import Language

from common.messages import MAX_ENTITY_CHARS, Entity, entity_key

T = TypeVar("T")

NON_NER_COMPONENTS = ["tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer"]
WARM_UP_TEXT = (
    "The Prime Minister, John Howard, met officials of the United Nations in Sydney on "
    "Monday, while Qantas and BHP Billiton reported to the Australian Stock Exchange."
)

# The default of `Settings.max_piece_chars` (common/config.py), for callers without settings.
DEFAULT_PIECE_CHARS = 20_000
# Characters one nlp.pipe call may hold, in pieces: 4 x 20,000 holds a normal batch (64 news
# articles of ~1,200 characters) in one call, and peaks at ~280 MB RSS (bench/RESULTS.md).
PIPE_PIECES = 4

# How good a whitespace run is as a place to cut, best first (the parser and senter are not
# loaded, so sentence ends come from punctuation, not from spaCy).
PARAGRAPH, LINE, SENTENCE, SPACE = 3, 2, 1, 0
HARD_CUT = -1  # a run of text with no whitespace at all: cut anywhere
MAX_RUN_CHARS = 1_000  # the longest run without whitespace handed to spaCy in one piece
_LONG_WORD = re.compile(rf"\S{{{MAX_RUN_CHARS + 1}}}")
_WHITESPACE = re.compile(r"\s+")
# Sentence-final punctuation, possibly followed by closing quotes or brackets, right before
# a whitespace run: "end." / "end?\"" / "end.)".
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u2019\u201d\u00bb)\]]{0,2}\Z")

Span = tuple[int, int]


def load_model(name: str) -> Language:
    nlp = spacy.load(name, exclude=NON_NER_COMPONENTS)
    # Warm the tokenizer cache outside any memory zone: entries added inside one are freed.
    nlp(WARM_UP_TEXT)
    return nlp


def normalise(text: str) -> str:
    """The readable surface form: whitespace collapsed (the key also case-folds)."""
    return " ".join(text.split())


def split_text(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters (see `piece_spans`)."""
    return [text[start:end] for start, end in piece_spans(text, limit)]


def piece_spans(text: str, limit: int) -> list[Span]:
    """Where to cut `text` into pieces of at most `limit` characters, as (start, end) offsets.

    A text within the limit is one piece, unchanged; a blank text (empty or whitespace only)
    has none. A longer one is cut at whitespace runs, the best kind first: blank lines
    (paragraphs), then line breaks, then sentence ends, then any whitespace; a run without
    whitespace longer than MAX_RUN_CHARS (1,000; no word is that long, and spaCy's tokenizer
    is quadratic on such runs) is cut every MAX_RUN_CHARS characters, even in a short text.
    Consecutive parts are packed greedily into one piece while it stays within the limit.
    The whitespace at a cut belongs to no piece (nor does the text's leading and trailing
    whitespace): what lies between two consecutive spans is whitespace, and the spans cover
    all the rest.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if not text or text.isspace():
        return []
    if len(text) <= limit and _LONG_WORD.search(text) is None:
        return [(0, len(text))]
    runs = [
        (m.start(), m.end(), _strength(text, m.start(), m.end()))
        for m in _WHITESPACE.finditer(text)
    ]
    starts = [start for start, _, _ in runs]
    first = len(text) - len(text.lstrip())
    last = len(text.rstrip())
    spans: list[Span] = []
    _cut(runs, starts, (first, last), limit, PARAGRAPH, spans)
    return spans


def _longest_word(runs: list[tuple[int, int, int]], starts: list[int], span: Span) -> int:
    """The longest stretch of text[span] without whitespace."""
    lo, hi = span
    longest, previous_end = 0, lo
    for run_start, run_end, _ in runs[bisect_left(starts, lo) : bisect_left(starts, hi)]:
        longest = max(longest, run_start - previous_end)
        previous_end = run_end
    return max(longest, hi - previous_end)


def _strength(text: str, start: int, end: int) -> int:
    """What cutting at the whitespace run text[start:end] would cut: paragraph, line..."""
    # splitlines knows every line break ("\r\n", "\n", "\r", "\u2028"...); the sentinels
    # make a break at either end of the run count too.
    breaks = len(f".{text[start:end]}.".splitlines()) - 1
    if breaks >= 2:
        return PARAGRAPH
    if breaks == 1:
        return LINE
    if _SENTENCE_END.search(text, max(0, start - 3), start):
        return SENTENCE
    return SPACE


def _cut(
    runs: list[tuple[int, int, int]],
    starts: list[int],
    span: Span,
    limit: int,
    level: int,
    out: list[Span],
) -> None:
    """Append to `out` the pieces of text[span] (no whitespace at either end), cutting at
    runs of at least `level`, and at weaker ones only inside parts still over the limit."""
    lo, hi = span

    def fits(start: int, end: int) -> bool:
        return end - start <= limit and _longest_word(runs, starts, (start, end)) <= MAX_RUN_CHARS

    if fits(lo, hi):
        out.append(span)
        return
    if level == HARD_CUT:  # no whitespace inside: any cut is as bad as another
        # spaCy's tokenizer is quadratic on a run without whitespace (1,000 emoji 0.17 s,
        # 4,000 1.8 s, 8,000 6.4 s: bench/RESULTS.md), and no real word is that long: cut
        # such runs short so one hostile article cannot hold an extractor for minutes.
        step = min(limit, MAX_RUN_CHARS)
        out.extend((start, min(start + step, hi)) for start in range(lo, hi, step))
        return
    # The parts between the runs of this strength or better; none starts or ends with
    # whitespace, since runs are maximal and span has none at its ends.
    parts: list[Span] = []
    part_start = lo
    for run_start, run_end, strength in runs[bisect_left(starts, lo) : bisect_left(starts, hi)]:
        if strength >= level:
            parts.append((part_start, run_start))
            part_start = run_end
    parts.append((part_start, hi))
    piece: Span | None = None
    for start, end in parts:
        if piece is not None and end - piece[0] <= limit and fits(start, end):
            piece = (piece[0], end)  # the part fits in the piece being packed
            continue
        if piece is not None:
            out.append(piece)
            piece = None
        if fits(start, end):
            piece = (start, end)
        else:
            _cut(runs, starts, (start, end), limit, level - 1, out)
    if piece is not None:
        out.append(piece)


def pipe_groups(pieces: Sequence[T], lengths: Sequence[int], budget: int) -> Iterator[list[T]]:
    """`pieces` in order, in consecutive groups whose `lengths` add up to at most `budget`
    (a piece longer than the budget alone in its group)."""
    group: list[T] = []
    held = 0
    for piece, length in zip(pieces, lengths, strict=True):
        if group and held + length > budget:
            yield group
            group, held = [], 0
        group.append(piece)
        held += length
    if group:
        yield group


class EntityExtractor:
    def __init__(
        self,
        nlp: Language,
        skip_labels: Iterable[str],
        piece_chars: int = DEFAULT_PIECE_CHARS,
        pipe_chars: int | None = None,
        vocabulary_strings: int = 0,
    ) -> None:
        """`piece_chars`: the longest piece of a text NER sees at once; `pipe_chars`: the
        most characters one nlp.pipe call holds (default PIPE_PIECES pieces' worth);
        `vocabulary_strings`: how many strings the vocabulary may gain for good before every
        call runs in a memory zone (0: always in a zone; see the module's docstring)."""
        if piece_chars < 1:
            raise ValueError(f"piece_chars must be at least 1, not {piece_chars}")
        if vocabulary_strings < 0:
            raise ValueError(f"vocabulary_strings must be 0 or more, not {vocabulary_strings}")
        self.nlp = nlp
        self.skip_labels = frozenset(skip_labels)
        self.piece_chars = piece_chars
        self.pipe_chars = pipe_chars or piece_chars * PIPE_PIECES
        self.vocabulary_limit = len(nlp.vocab.strings) + vocabulary_strings

    def extract(self, texts: Sequence[str]) -> list[list[Entity]]:
        """The distinct entities of each text, with their number of occurrences.

        A text over `piece_chars` is extracted in pieces (`piece_spans`) and its counts
        summed: one result per text, in order. Near a cut, counts can differ from one pass
        over the whole text (docs/architecture.md, "Long articles").
        """
        found: list[dict[str, list]] = [{} for _ in texts]
        pieces = [
            (owner, piece)
            for owner, text in enumerate(texts)
            for piece in split_text(text, self.piece_chars)
        ]
        lengths = [len(piece) for _, piece in pieces]
        for group in pipe_groups(pieces, lengths, self.pipe_chars):
            with self._zone():
                docs = self.nlp.pipe([piece for _, piece in group], batch_size=len(group))
                for (owner, _), doc in zip(group, docs, strict=True):
                    self._count(doc.ents, found[owner])
        return [[Entity(*fields) for fields in counts.values()] for counts in found]

    def _zone(self) -> contextlib.AbstractContextManager:
        """No zone while the vocabulary is under its limit (what the call adds stays, and
        the tokenizer caches it), else a memory zone (what the call adds is freed)."""
        if len(self.nlp.vocab.strings) < self.vocabulary_limit:
            return contextlib.nullcontext()
        return self.nlp.memory_zone()

    def _count(self, spans: Iterable, found: dict[str, list]) -> None:
        """Add the entities of `spans` to `found` (key -> [key, text, label, count]); the
        first surface form of a key is the one kept."""
        for span in spans:
            if span.label_ in self.skip_labels:
                continue
            text = normalise(span.text)
            if not text or len(text) > MAX_ENTITY_CHARS:
                continue  # no real entity is that long, and the wire refuses it
            key = entity_key(text, span.label_)
            if key in found:
                found[key][3] += 1
            else:
                found[key] = [key, text, span.label_, 1]
