"""The wire format of the mesh, defined once.

Every message is a msgspec struct encoded as msgpack. The tag names the message and its
schema version ("article.v2"), so a process that receives a message it does not know, or a
version it does not speak, fails to decode it loudly instead of guessing.

Every frame is untrusted input, like an HTTP body: decoding validates types, lengths and
ranges (an entity count of 2**63 or a label of any shape never reaches the store), and a
frame that does not decode is dropped and logged by whoever received it (`Codec.decode_or_drop`),
never a crash. Frame sizes are bounded by the sockets themselves (MAXMSGSIZE,
common/sockets.py).

Flow: extractor -> Want -> ledger -> Article -> extractor -> Extraction -> saver inlet ->
saver -> Ack -> ledger. A ledger answers a Want with one message of Article frames (a chunk);
results travel as two frames, [route key, Extraction], so the saver inlet can send every
result of one publication to the same saver without decoding it (`route_key`);
an extractor that cannot process an article sends the ledger a Failure instead. Acks and
failures go to the ledger named by id in the message, at the endpoint configuration gives
for that id (never an address carried by a message), and carry the dispatch token the
ledger issued, so a ledger believes an ack only for what it has in flight.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any, Generic, TypeVar

import msgspec

from common import metrics

T = TypeVar("T")

ArticleId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Publication = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
LedgerId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Token = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
EntityKey = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{24}$")]
Label = Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z_]{0,63}$")]
# An entity is at most a few words; a 1 MiB article has well under a million tokens.
MAX_ENTITY_CHARS = 2000
EntityText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ENTITY_CHARS)]
Occurrences = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
ErrorText = Annotated[str, msgspec.Meta(max_length=2000)]


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

    def decode_or_drop(self, frame: bytes, log: logging.Logger, source: str) -> T | None:
        """The message, or None (logged) for a frame that is not one: never raises."""
        try:
            return self._decoder.decode(frame)
        except msgspec.DecodeError as exc:  # ValidationError included
            metrics.FRAMES_DROPPED.inc()
            log.warning(
                "dropped a bad frame",
                extra={"source": source, "bytes": len(frame), "error": str(exc)[:300]},
            )
            return None


class Article(msgspec.Struct, frozen=True, tag="article.v2", array_like=True):
    """One journaled article, dispatched by a ledger to the extractors."""

    id: ArticleId
    publication: Publication
    content: str  # bounded by the frame size
    ledger: LedgerId  # which ledger wants the acknowledgement
    token: Token  # this dispatch's token, echoed back in the ack


class Entity(msgspec.Struct, frozen=True, array_like=True):
    """One distinct entity of an article: stable key, display text, label, occurrences."""

    key: EntityKey
    text: EntityText
    label: Label
    count: Occurrences


class Extraction(msgspec.Struct, frozen=True, tag="extraction.v2", array_like=True):
    """The entities of one article, from an extractor to the savers."""

    id: ArticleId
    publication: Publication
    entities: Annotated[list[Entity], msgspec.Meta(max_length=200_000)]
    ledger: LedgerId
    token: Token


class Acked(msgspec.Struct, frozen=True, array_like=True):
    id: ArticleId
    token: Token


class Ack(msgspec.Struct, frozen=True, tag="ack.v2", array_like=True):
    """Articles whose counts are committed to the store (or were already), each with the
    token of the dispatch that was committed."""

    articles: Annotated[list[Acked], msgspec.Meta(max_length=100_000)]


class Failure(msgspec.Struct, frozen=True, tag="failure.v2", array_like=True):
    """An article could not be processed. `retryable`: the same text may succeed later (e.g.
    out of memory), so the ledger tries again; otherwise (the text itself makes spaCy or the
    store fail) it is dead-lettered at once, since a retry would fail the same way."""

    id: ArticleId
    token: Token
    error: ErrorText
    retryable: bool = True


class Released(msgspec.Struct, frozen=True, tag="released.v1", array_like=True):
    """Articles an extractor received and will not extract (it is stopping): the ledger
    sends them again at once, counting no failure against them, instead of one lease
    later. Like an ack, it counts only with the dispatch token the ledger issued."""

    articles: Annotated[list[Acked], msgspec.Meta(max_length=100_000)]


# The most articles one Want may ask for: a bound on what a forged one can make a ledger
# read and send at once (the ledger's window bounds it too).
MAX_WANT = 10_000


class Want(msgspec.Struct, frozen=True, tag="want.v1", array_like=True):
    """An extractor asks a ledger for its next chunk of at most `room` articles. The ledger
    answers once, with one message of 1..room Article frames, when it has work; `seq` counts
    the extractor's asks, so a repeated ask (sent again while it waited, in case the ledger
    restarted) is answered at most once."""

    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    room: Annotated[int, msgspec.Meta(ge=1, le=MAX_WANT)]


Message = Article | Extraction | Ack | Failure | Want | Released

_codec: Codec[Message] = Codec(Message)
encode = _codec.encode
decode = _codec.decode
decode_or_drop = _codec.decode_or_drop


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


# Results carry this digest of their publication as a first frame: the saver inlet routes on
# it without decoding the Extraction, and it is short and fixed whatever the name.
ROUTE_KEY_BYTES = 8
# What a saver sends the saver inlet when it connects and then every SAVER_READY_SECONDS:
# "I am here, route to me". The inlet forgets a saver it has not heard from for three times
# that long.
SAVER_READY = b"saver-ready"
SAVER_READY_SECONDS = 1.0


def route_key(publication: str) -> bytes:
    """The routing frame of a result of `publication` (see ROUTE_KEY_BYTES)."""
    return hashlib.blake2b(publication.encode(), digest_size=ROUTE_KEY_BYTES).digest()
