"""Turning a request body into validated articles: JSON object, JSON array, or NDJSON.

Nothing here touches the journal: a body is either entirely valid or rejected whole, with
an error that names the offending item.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

import falcon
import msgspec
from msgspec import Meta

from common.messages import article_id
from services.frontend.http.schemas import (
    HIDDEN,
    NO_SPACE,
    NOT_BLANK,
    PUBLICATION_NAME,
    ArticleIn,
)
from services.frontend.journal import Entry

JSON_TYPES = {"application/json"}
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl"}
# JSON's own whitespace (RFC 8259): what may surround a value. Not str.isspace(), which also
# takes U+0085, U+2028 and the like, characters a JSON string may hold raw.
JSON_WHITESPACE = " \t\n\r"


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
        # Lines end at "\n" only (a "\r" before it is JSON whitespace): str.splitlines()
        # would also cut at U+2028, U+0085 and other characters a JSON string may hold raw.
        lines = [
            (n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip(JSON_WHITESPACE)
        ]
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
    if not text.strip(JSON_WHITESPACE):
        raise falcon.HTTPBadRequest(title="Malformed JSON", description=f"{where} is empty")
    try:
        return decoder.decode(text)
    except msgspec.ValidationError as exc:
        # msgspec names the path, e.g. "Expected `str`, got `int` - at `$[3].content`".
        raise falcon.HTTPUnprocessableEntity(
            title="Invalid article", description=f"{where}: {readable(exc, text)}"
        ) from exc
    except msgspec.DecodeError as exc:
        raise falcon.HTTPBadRequest(title="Malformed JSON", description=f"{where}: {exc}") from exc


_NAME_WORDS = "Expected a name without control, bidirectional-control or zero-width characters"
_REGEX_WORDS = {
    NOT_BLANK: "Expected a string that is not blank",
    NO_SPACE: "Expected a string without whitespace or control characters",
    PUBLICATION_NAME: "Expected a name that is not blank, without control, "
    "bidirectional-control or zero-width characters",
}
_MISMATCH = "Expected `str` matching regex {!r}"
_PATH = re.compile(r" - at `(\$[^`]*)`$")
_PATH_STEP = re.compile(r"\[(\d+)\]|\.(\w+)")
_HIDDEN = re.compile(f"[{HIDDEN}]")
_ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}


def readable(error: msgspec.ValidationError, document: str | bytes | None = None) -> str:
    """msgspec's message, with the schema's regexes said in words.

    Given the JSON `document` that failed, a publication name refused for a character the
    reader cannot see is told which one and where, e.g. "U+202E RIGHT-TO-LEFT OVERRIDE (a
    bidirectional control) at character 4".
    """
    message = str(error)
    name_refused = _MISMATCH.format(PUBLICATION_NAME)
    if document is not None and message.startswith(name_refused):
        found = _hidden_character(document, message)
        if found:
            return f"{_NAME_WORDS}; found {found}{message[len(name_refused) :]}"
    for regex, words in _REGEX_WORDS.items():
        message = message.replace(_MISMATCH.format(regex), words)
    return message


def _hidden_character(document: str | bytes, message: str) -> str:
    """The first hidden character of the string at the error's path, said in words; "" if
    there is none (the name is blank) or the path does not lead to a string."""
    where = _PATH.search(message)
    try:
        value: Any = msgspec.json.decode(document)
        for index, key in _PATH_STEP.findall(where.group(1) if where else ""):
            value = value[int(index)] if index else value[key]
    except (msgspec.DecodeError, LookupError, TypeError):
        return ""
    hidden = _HIDDEN.search(value) if isinstance(value, str) else None
    if hidden is None:
        return ""
    char = hidden.group()
    if unicodedata.category(char) == "Cc":
        kind = "a control character"
    elif char in _ZERO_WIDTH:
        kind = "a zero-width character"
    else:
        kind = "a bidirectional control"
    name = unicodedata.name(char, "")  # control characters have none
    code = f"U+{ord(char):04X} {name}" if name else f"U+{ord(char):04X}"
    return f"{code} ({kind}) at character {hidden.start() + 1}"
