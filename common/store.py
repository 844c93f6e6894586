"""The store interface: what savers write and readers query, whatever the backend.

Layout (both backends): publications/{name} {name, articles};
publications/{name}/entities/{key} {text, label, count}; articles/{id} the idempotency marker.
Both implementations pass the same contract tests (tests/contract/).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, Protocol

import msgspec
from msgspec import Meta

from common.messages import Extraction


class PublicationCount(msgspec.Struct, frozen=True):
    name: str
    articles: int


class EntityCount(msgspec.Struct, frozen=True):
    key: str
    text: str
    label: str
    count: int


class EntityPage(msgspec.Struct, frozen=True):
    publication: str
    entities: list[EntityCount]
    next_cursor: str | None


# A cursor comes from clients, so it is checked for what both stores can use alike:
# - counts are never negative, and both stores keep signed 64-bit integers (a larger count
#   would overflow SQLite's binding and Firestore's encoding: a 500, not a 400);
# - keys are digests (common.messages.entity_key). Firestore orders entities by document id,
#   which is the key itself only for ASCII letters, digits and "-" up to 1,500 bytes
#   (store/firestore/ids.py encodes anything else), so only such keys page the same way on
#   both stores.
CursorCount = Annotated[int, Meta(ge=0, le=2**63 - 1)]
CursorKey = Annotated[str, Meta(min_length=1, max_length=1500, pattern=r"\A[0-9A-Za-z-]+\Z")]


class EntityCursor(msgspec.Struct, frozen=True, array_like=True):
    """Position after the last entity of a page in (count desc, text, key) order."""

    count: CursorCount
    text: str
    key: CursorKey


class InvalidCursor(ValueError):
    pass


class UnknownPublication(LookupError):
    pass


def encode_cursor(entity: EntityCount) -> str:
    raw = msgspec.msgpack.encode(EntityCursor(entity.count, entity.text, entity.key))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> EntityCursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.msgpack.decode(raw, type=EntityCursor)
    except (ValueError, msgspec.DecodeError) as exc:
        raise InvalidCursor(f"invalid cursor {cursor!r}") from exc


class Store(Protocol):
    def commit(self, extractions: Sequence[Extraction]) -> list[str]:
        """Add the counts of every article not counted yet, atomically with its marker.

        Returns the ids newly counted; ids already marked add nothing. All or nothing: when
        it raises, nothing of this call was applied.
        """

    def publications(self, limit: int = 100) -> list[PublicationCount]:
        """Publications by article count, descending; ties by name."""

    def top_entities(
        self,
        publication: str,
        limit: int = 20,
        cursor: str | None = None,
        label: str | None = None,
    ) -> EntityPage:
        """Entities of a publication by count desc, ties by text; raises UnknownPublication."""

    def counted(self, ids: Sequence[str]) -> set[str]:
        """Which of these article ids carry a marker."""

    def poison(self, error: Exception) -> bool:
        """Whether `error`, raised by `commit`, is about the data (an invalid value, a
        document too large): retrying the same articles cannot fix it. Anything else (the
        store unreachable, locked, contended, or refusing us) is worth retrying."""

    def close(self) -> None: ...
