"""The wire format of the mesh, defined once.

Every message is a msgspec struct encoded as msgpack. The tag names the message and its
schema version ("article.v1"), so a process that receives a message it does not know, or a
version it does not speak, fails to decode it loudly instead of guessing.

Flow: ledger -> Article -> extractor -> Extraction -> saver inlet -> saver -> Ack -> ledger;
an extractor that cannot process an article sends the ledger a Failure instead.
"""

from __future__ import annotations

import hashlib
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")


class Codec(Generic[T]):
    """msgpack encoding of one union of tagged structs: the data plane's messages here, the
    control channel's in common/control.py. Decoding validates the types and the tag."""

    def __init__(self, union: Any) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(union)

    def encode(self, message: T) -> bytes:
        return self._encoder.encode(message)

    def decode(self, frame: bytes) -> T:
        return self._decoder.decode(frame)


class Article(msgspec.Struct, frozen=True, tag="article.v1", array_like=True):
    """One journaled article, dispatched by a ledger to the extractors."""

    id: str
    publication: str
    content: str
    ack_to: str  # the ledger endpoint that wants the acknowledgement


class Entity(msgspec.Struct, frozen=True, array_like=True):
    """One distinct entity of an article: stable key, display text, label, occurrences."""

    key: str
    text: str
    label: str
    count: int


class Extraction(msgspec.Struct, frozen=True, tag="extraction.v1", array_like=True):
    """The entities of one article, from an extractor to the savers."""

    id: str
    publication: str
    entities: list[Entity]
    ack_to: str


class Ack(msgspec.Struct, frozen=True, tag="ack.v1", array_like=True):
    """Article ids whose counts are committed to the store (or were already)."""

    ids: list[str]


class Failure(msgspec.Struct, frozen=True, tag="failure.v1", array_like=True):
    """An extractor could not process an article. `retryable`: the same text may succeed
    later (e.g. out of memory), so the ledger tries again; otherwise (the text itself makes
    spaCy fail) it is dead-lettered at once, since a retry would fail the same way."""

    id: str
    error: str
    retryable: bool = True


Message = Article | Extraction | Ack | Failure

_codec: Codec[Message] = Codec(Message)
encode = _codec.encode
decode = _codec.decode


def article_id(publication: str, content: str) -> str:
    """The id of an article sent without one: the same text twice is the same article."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(publication.encode())
    digest.update(b"\x00")
    digest.update(content.encode())
    return digest.hexdigest()


def entity_key(text: str, label: str) -> str:
    """A stable digest of normalised text + label (never ``hash()``, which varies per process)."""
    return hashlib.blake2b(f"{label}\x00{text.casefold()}".encode(), digest_size=12).hexdigest()
