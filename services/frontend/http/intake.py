"""Turning a request body into validated articles: JSON object, JSON array, or NDJSON.

Nothing here touches the journal: a body is either entirely valid or rejected whole, with
an error that names the offending item.
"""

from __future__ import annotations

from typing import Annotated

import falcon
import msgspec
from msgspec import Meta

from common.messages import article_id
from services.frontend.http.schemas import NO_SPACE, NOT_BLANK, ArticleIn
from services.frontend.journal import Entry

JSON_TYPES = {"application/json"}
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl"}


class Intake:
    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        batch = Annotated[list[ArticleIn], Meta(min_length=1, max_length=max_batch)]
        self._json = msgspec.json.Decoder(ArticleIn | batch)
        self._line = msgspec.json.Decoder(ArticleIn)

    def parse(self, media_type: str, body: bytes) -> list[Entry]:
        text = _utf8(body)
        if media_type in NDJSON_TYPES:
            articles = self._parse_ndjson(text)
        else:
            parsed = _decode(self._json, text, where="body")
            articles = parsed if isinstance(parsed, list) else [parsed]
        return [to_entry(a) for a in articles]

    def _parse_ndjson(self, text: str) -> list[ArticleIn]:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not lines:
            raise falcon.HTTPUnprocessableEntity(
                title="Empty batch", description="the NDJSON body holds no article"
            )
        if len(lines) > self.max_batch:
            raise falcon.HTTPUnprocessableEntity(
                title="Batch too long",
                description=f"{len(lines)} articles; at most {self.max_batch} per request",
            )
        return [_decode(self._line, line, where=f"line {n}") for n, line in lines]


def to_entry(article: ArticleIn) -> Entry:
    ident = article.id or article_id(article.publication, article.content)
    return Entry(ident, article.publication, article.content)


def media_type_of(content_type: str | None) -> str:
    """The bare media type; 415 unless it is JSON or NDJSON in UTF-8."""
    if not content_type:
        raise falcon.HTTPUnsupportedMediaType(
            title="Unsupported media type",
            description="Content-Type is required: application/json or application/x-ndjson",
        )
    media_type, _, params = content_type.partition(";")
    media_type = media_type.strip().lower()
    charset = params.strip().lower().removeprefix("charset=").strip('"') if params else "utf-8"
    if media_type not in JSON_TYPES | NDJSON_TYPES or charset not in ("utf-8", "utf8"):
        raise falcon.HTTPUnsupportedMediaType(
            title="Unsupported media type",
            description=f"unsupported Content-Type {content_type!r}: send application/json "
            "or application/x-ndjson, UTF-8",
        )
    return media_type


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise falcon.HTTPBadRequest(
            title="Invalid encoding", description=f"body is not valid UTF-8 (byte {exc.start})"
        ) from exc


def _decode(decoder: msgspec.json.Decoder, text: str, *, where: str):
    if not text.strip():
        raise falcon.HTTPBadRequest(title="Malformed JSON", description=f"{where} is empty")
    try:
        return decoder.decode(text)
    except msgspec.ValidationError as exc:
        # msgspec names the path, e.g. "Expected `str`, got `int` - at `$[3].content`".
        raise falcon.HTTPUnprocessableEntity(
            title="Invalid article", description=f"{where}: {readable(exc)}"
        ) from exc
    except msgspec.DecodeError as exc:
        raise falcon.HTTPBadRequest(title="Malformed JSON", description=f"{where}: {exc}") from exc


_REGEX_WORDS = {
    f"Expected `str` matching regex {NOT_BLANK!r}": "Expected a string that is not blank",
    f"Expected `str` matching regex {NO_SPACE!r}": (
        "Expected a string without whitespace or control characters"
    ),
}


def readable(error: msgspec.ValidationError) -> str:
    """msgspec's message, with the schema's regexes said in words."""
    message = str(error)
    for regex, words in _REGEX_WORDS.items():
        message = message.replace(regex, words)
    return message
