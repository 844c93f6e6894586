"""services.extractor.cache and the extractor's use of it: each distinct text through NER
once, every copy counted as if extracted on its own."""

from __future__ import annotations

from pathlib import Path

from common.messages import Article, Entity, Failure
from services.extractor.__main__ import _extract_once_per_text
from services.extractor.cache import TextCache
from services.extractor.ner import EntityExtractor

WIRE = "Angela Merkel met Emmanuel Macron in Paris on Tuesday, Reuters reported."
OTHER = "Qantas flew from Sydney to London, said Alan Joyce."


def article(ident: str, publication: str, content: str) -> Article:
    return Article(ident, publication, content, "local", 7)


class Counting:
    """The real extractor, counting the texts it is asked to run NER on."""

    def __init__(self, extractor: EntityExtractor) -> None:
        self.extractor = extractor
        self.texts: list[str] = []

    def extract(self, texts):
        self.texts += texts
        return self.extractor.extract(texts)


def test_a_syndicated_copy_is_extracted_once_and_counted_like_the_original(
    tmp_path: Path, extractor: EntityExtractor
):
    cache = TextCache(tmp_path / "cache.sqlite3", 100, ["model", "labels"])
    counting = Counting(extractor)
    batch = [
        article("a1", "Herald", WIRE),
        article("a2", "Courier", WIRE),  # the same wire copy, in the same batch
        article("a3", "Herald", OTHER),
    ]
    results, hits = _extract_once_per_text(counting, cache, batch)
    assert counting.texts == [WIRE, OTHER]
    assert hits == 1
    alone = {text: extractor.extract([text])[0] for text in (WIRE, OTHER)}
    assert results == [alone[WIRE], alone[WIRE], alone[OTHER]]

    # Later, from another extractor process of the host (its own connection): no NER at all.
    other_process = TextCache(tmp_path / "cache.sqlite3", 100, ["model", "labels"])
    again = Counting(extractor)
    results, hits = _extract_once_per_text(again, other_process, [article("a4", "Gazette", WIRE)])
    assert again.texts == [] and hits == 1
    assert results == [alone[WIRE]]


def test_the_cache_is_bounded_and_keyed_by_configuration(tmp_path: Path):
    paris = [Entity("a" * 24, "Paris", "GPE", 1)]
    cache = TextCache(tmp_path / "cache.sqlite3", 3, ["model-a"])
    digests = [cache.digest(f"text {i}") for i in range(5)]
    for digest in digests:
        cache.put({digest: paris})
    assert set(cache.get(digests)) == set(digests[-3:])  # the oldest two dropped
    other = TextCache(tmp_path / "cache.sqlite3", 3, ["model-b"])
    assert other.digest("text 4") != digests[4]
    assert other.get([other.digest("text 4")]) == {}


class Failing:
    """An extractor that raises on one text, as spaCy does on a text it cannot process (a
    stand-in: no short real text makes the model fail; tests/e2e covers a real one)."""

    def extract(self, texts):
        if "boom" in texts:
            raise ValueError("E088: text too long (stand-in)")
        return [[] for _ in texts]


def test_every_copy_of_a_failing_text_fails_with_its_own_id_and_token(tmp_path: Path):
    cache = TextCache(tmp_path / "cache.sqlite3", 100, ["model"])
    batch = [article("b1", "Herald", "boom"), article("b2", "Courier", "boom")]
    batch[1] = Article("b2", "Courier", "boom", "local", 99)
    results, _ = _extract_once_per_text(Failing(), cache, batch)
    assert [type(r) for r in results] == [Failure, Failure]
    assert [(r.id, r.token) for r in results] == [("b1", 7), ("b2", 99)]
    assert cache.get([cache.digest("boom")]) == {}  # a failure is never cached
