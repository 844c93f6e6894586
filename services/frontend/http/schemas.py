"""HTTP request and response bodies, declared once: they validate requests, shape responses
and are the schemas of the OpenAPI document (services/frontend/http/openapi.py)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from common.store import PublicationCount

MAX_PUBLICATION_CHARS = 200

# The patterns are written so that Python's re (which validates) and ECMAScript (which JSON
# Schema and its clients use) decide alike:
# - character classes spelled out: `\s` differs between the two, e.g. on U+001E or U+FEFF;
# - a JSON Schema `pattern` may match anywhere in the string (msgspec searches too), so a
#   rule about the whole string is anchored at both ends;
# - the end of the string is `(?![\s\S])` ("no character follows"): Python's `$` also
#   matches before a final "\n", so `^[^\n]+$` would let "name\n" through in Python only.
SPACE_OR_CONTROL = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
END = r"(?![\s\S])"
NOT_BLANK = rf"[^{SPACE_OR_CONTROL}]"  # at least one visible character
NO_SPACE = rf"^[^{SPACE_OR_CONTROL}]+{END}"  # visible characters only

# Characters a publication name must not hold: they are invisible, or change how the text
# around them is displayed (a name could pass for another in a list): control characters
# (Cc), bidirectional controls (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069) and
# zero-width characters (U+200B-U+200D, U+2060, U+FEFF).
HIDDEN = r"\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff"
# Whitespace that is not HIDDEN: allowed in a name, but not alone.
SPACES = r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Leading spaces, one visible character, then anything not HIDDEN up to the end. The first
# two classes do not overlap, so matching is linear in the length (no backtracking blow-up).
PUBLICATION_NAME = rf"^[{SPACES}]*[^{HIDDEN}{SPACES}][^{HIDDEN}]*{END}"

Publication = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_PUBLICATION_CHARS,
        pattern=PUBLICATION_NAME,
        description="Name of the publication; not blank, at most 200 characters, without "
        "control, bidirectional-control or zero-width characters.",
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
