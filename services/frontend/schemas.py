"""HTTP request and response bodies, declared once: they validate requests and (later) feed
the OpenAPI document."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

MAX_PUBLICATION_CHARS = 200

Publication = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_PUBLICATION_CHARS,
        pattern=r"\S",
        description="Name of the publication; not blank, at most 200 characters.",
    ),
]
Content = Annotated[str, Meta(min_length=1, pattern=r"\S", description="Article text; not blank.")]
ClientId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=r"^\S+$",
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
    accepted: int
    ids: list[str]


class ErrorBody(msgspec.Struct):
    title: str
    description: str | None = None
