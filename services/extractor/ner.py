"""Named-entity extraction with spaCy: NER only, batched, in memory zones.

Only the `ner` component runs (it has its own tok2vec): the same entities as the full
pipeline at about 3x the speed (docs/measurements.md). Each batch runs inside `nlp.memory_zone()`,
so the strings a long-running process meets are freed after each batch instead of growing
the shared StringStore forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import spacy
from spacy.language import Language

from common.messages import Entity, entity_key

NON_NER_COMPONENTS = ["tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer"]
WARM_UP_TEXT = (
    "The Prime Minister, John Howard, met officials of the United Nations in Sydney on "
    "Monday, while Qantas and BHP Billiton reported to the Australian Stock Exchange."
)


def load_model(name: str) -> Language:
    nlp = spacy.load(name, exclude=NON_NER_COMPONENTS)
    # Warm the tokenizer cache outside any memory zone: entries added inside one are freed.
    nlp(WARM_UP_TEXT)
    return nlp


def normalise(text: str) -> str:
    """The readable surface form: whitespace collapsed (the key also case-folds)."""
    return " ".join(text.split())


class EntityExtractor:
    def __init__(self, nlp: Language, skip_labels: Iterable[str]) -> None:
        self.nlp = nlp
        self.skip_labels = frozenset(skip_labels)

    def extract(self, texts: Sequence[str]) -> list[list[Entity]]:
        """The distinct entities of each text, with their number of occurrences."""
        results: list[list[Entity]] = []
        with self.nlp.memory_zone():
            for doc in self.nlp.pipe(texts, batch_size=max(1, len(texts))):
                results.append(self._count(doc.ents))
        return results

    def _count(self, spans: Iterable) -> list[Entity]:
        found: dict[str, list] = {}
        for span in spans:
            if span.label_ in self.skip_labels:
                continue
            text = normalise(span.text)
            if not text:
                continue
            key = entity_key(text, span.label_)
            if key in found:
                found[key][3] += 1
            else:
                found[key] = [key, text, span.label_, 1]
        return [Entity(*fields) for fields in found.values()]
