from __future__ import annotations

import logging

import msgspec
import pytest

from common.messages import (
    Ack,
    Acked,
    Article,
    Entity,
    Extraction,
    Failure,
    article_id,
    decode,
    decode_or_drop,
    encode,
    entity_key,
)

PARIS = Entity(entity_key("Paris", "GPE"), "Paris", "GPE", 2)


@pytest.mark.parametrize(
    "message",
    [
        Article("id1", "Pub", "Some text", "local", 7),
        Extraction("id1", "Pub", [PARIS], "local", 7),
        Ack([Acked("a", 1), Acked("b", 2)]),
        Failure("id1", 7, "ValueError: boom", retryable=False),
    ],
)
def test_round_trip(message):
    assert decode(encode(message)) == message


def test_unknown_message_or_version_is_refused():
    frame = msgspec.msgpack.encode(["article.v1", "id", "pub", "text", "tcp://x"])
    with pytest.raises(msgspec.ValidationError):
        decode(frame)


def _extraction_frame(**changes) -> bytes:
    fields = {"id": "a1", "publication": "Pub", "ledger": "local", "token": 7}
    entity = {"key": PARIS.key, "text": "Paris", "label": "GPE", "count": 2}
    entity.update(changes.pop("entity", {}))
    fields.update(changes)
    return msgspec.msgpack.encode(
        [
            "extraction.v2",
            fields["id"],
            fields["publication"],
            [[entity["key"], entity["text"], entity["label"], entity["count"]]],
            fields["ledger"],
            fields["token"],
        ]
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"entity": {"count": 2**63}},  # once retried forever by the saver
        {"entity": {"count": 0}},
        {"entity": {"label": "gpe; DROP"}},
        {"entity": {"key": "not-a-digest"}},
        {"entity": {"text": ""}},
        {"entity": {"text": "x" * 2001}},
        {"ledger": "tcp://127.0.0.1:1"},  # acks go to configured ledgers, never addresses
        {"token": -1},
        {"id": ""},
        {"publication": "p" * 201},
    ],
    ids=repr,
)
def test_frames_out_of_bounds_are_refused(changes):
    assert decode(_extraction_frame()) == Extraction("a1", "Pub", [PARIS], "local", 7)
    with pytest.raises(msgspec.ValidationError):
        decode(_extraction_frame(**changes))


def test_a_bad_frame_is_dropped_and_logged_not_raised(caplog):
    for frame in (b"\x00garbage", b"", _extraction_frame(entity={"count": 2**63})):
        assert decode_or_drop(frame, logging.getLogger("test"), "test inbox") is None
    assert len([r for r in caplog.records if r.message == "dropped a bad frame"]) == 3


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
