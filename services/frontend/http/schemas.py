"""HTTP request and response bodies, declared once: they validate requests, shape responses
and are the schemas of the OpenAPI document (services/frontend/http/openapi.py)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from common.store import PublicationCount

MAX_PUBLICATION_CHARS = 200

# Whitespace and control characters, spelled out: `\s` differs between Python's re (which
# validates) and ECMAScript (which JSON Schema and its clients use), e.g. on U+001E or U+FEFF.
SPACE_OR_CONTROL = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NOT_BLANK = rf"[^{SPACE_OR_CONTROL}]"  # at least one visible character
NO_SPACE = rf"^[^{SPACE_OR_CONTROL}]+$"  # visible characters only

Publication = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_PUBLICATION_CHARS,
        pattern=NOT_BLANK,
        description="Name of the publication; not blank, at most 200 characters.",
    ),
]
Content = Annotated[
    str, Meta(min_length=1, pattern=NOT_BLANK, description="Article text; not blank.")
]
ClientId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=NO_SPACE,
        description="Client's article id; the same id is counted once. Default: a digest "
        "of publication and content.",
    ),
]


class ArticleIn(msgspec.Struct, forbid_unknown_fields=True):
    """One article posted to POST /articles."""

    publication: Publication
    content: Content
    id: ClientId | None = None


class EnqueueIn(msgspec.Struct):
    """The original course client's body. Unknown fields are ignored, as its server did."""

    content: Content
    publication: Publication


class Accepted(msgspec.Struct):
    """202: every article is in the intake journal and will be counted once."""

    accepted: int
    ids: list[str]


class Queued(msgspec.Struct):
    """201 on the course client's route."""

    status: str
    id: str


class PublicationList(msgspec.Struct):
    publications: list[PublicationCount]


class HealthBody(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    ready: bool
    checks: dict[str, str]


class ErrorBody(msgspec.Struct):
    """Every error: what is wrong (title) and the details (description)."""

    title: str
    description: str | None = None
