from __future__ import annotations

import msgspec
import pytest

from common.messages import Ack, Article, Entity, Extraction, article_id, decode, encode, entity_key


@pytest.mark.parametrize(
    "message",
    [
        Article("id1", "Pub", "Some text", "tcp://127.0.0.1:1"),
        Extraction("id1", "Pub", [Entity("k", "Paris", "GPE", 2)], "tcp://127.0.0.1:1"),
        Ack(["a", "b"]),
    ],
)
def test_round_trip(message):
    assert decode(encode(message)) == message


def test_unknown_message_or_version_is_refused():
    frame = msgspec.msgpack.encode(["article.v2", "id", "pub", "text", "tcp://x"])
    with pytest.raises(msgspec.ValidationError):
        decode(frame)


def test_article_id_is_stable_and_depends_on_both_fields():
    assert article_id("A", "text") == article_id("A", "text")
    assert article_id("A", "text") != article_id("B", "text")
    assert article_id("A", "text") != article_id("A", "text!")
    # No ambiguity from where the boundary between the fields falls.
    assert article_id("ab", "c") != article_id("a", "bc")


def test_entity_key_folds_case_but_not_label():
    assert entity_key("New York", "GPE") == entity_key("NEW YORK", "GPE")
    assert entity_key("New York", "GPE") != entity_key("New York", "ORG")


def test_entity_key_never_changes():
    # Stored counts are keyed by it: a different digest would orphan every stored entity.
    assert entity_key("Paris", "GPE") == "555028bc16f371b569502379"
