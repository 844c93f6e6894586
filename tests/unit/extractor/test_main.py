"""The extractor process's handling of failures (services/extractor/__main__.py)."""

from __future__ import annotations

from collections.abc import Sequence

from common.messages import Article, Entity, Failure
from services.extractor.__main__ import _extract

GOOD = [Entity("k", "Paris", "GPE", 1)]


class Flaky:
    """An extractor whose texts name what they do: "value" and "memory" raise alone, and any
    batch holding one of them raises too."""

    def extract(self, texts: Sequence[str]) -> list[list[Entity]]:
        if "value" in texts:
            raise ValueError("[E088] Text of length 1000001 exceeds maximum of 1000000.")
        if "memory" in texts:
            raise MemoryError()
        if "disk" in texts:
            raise OSError(28, "No space left on device")
        return [GOOD for _ in texts]


def article(content: str) -> Article:
    return Article(id=content, publication="p", content=content, ledger="local", token=1)


def test_a_batch_without_errors_is_extracted_whole():
    assert _extract(Flaky(), [article("a"), article("b")]) == [GOOD, GOOD]


def test_only_the_article_that_fails_alone_fails_and_the_text_is_not_retried():
    batch = [article("a"), article("value"), article("b")]
    good, failure, other = _extract(Flaky(), batch)
    assert good == other == GOOD
    assert isinstance(failure, Failure)
    assert failure.id == "value"
    assert failure.error.startswith("ValueError: [E088]")
    assert failure.retryable is False  # the same text fails the same way: dead-letter now


def test_running_short_of_memory_or_disk_may_pass_on_another_try():
    results = _extract(Flaky(), [article("memory"), article("disk"), article("a")])
    assert [(r.id, r.retryable) for r in results[:2]] == [("memory", True), ("disk", True)]
    assert results[2] == GOOD
