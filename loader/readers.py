"""The load tool's input: dataset files streamed as rows, each an article or a skip.

Formats (from `--format`, else the file extension):
- JSONL/NDJSON (`.jsonl`, `.ndjson`): one object per line, `publication`, `content`, `id`?;
- CSV (`.csv`): a header naming a `publication` column and a `content` or `article` column
  (an `id` column is used if present), e.g. "All the News 2.0";
- text (`.txt`, `.cor`): one article per line, all of publication `--publication`.
`--publication` is also the publication of JSONL/CSV rows that have none.

A file is streamed, never held in memory (a 2 GB CSV). A row that cannot be an article (empty
content or publication, a malformed line, an invalid id) becomes a `Skip` with a countable
reason, because the server would reject the whole batch it sat in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from common.messages import article_id
from services.control import mesh
from services.frontend.http.schemas import MAX_PUBLICATION_CHARS, ArticleIn

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "text", ".cor": "text"}
# "All the News 2.0" has articles of hundreds of KB; csv's default field limit is 128 KiB.
# 2**31 - 1 fits a C long everywhere (sys.maxsize overflows it on some platforms).
CSV_FIELD_LIMIT = 2**31 - 1
MAX_ID_CHARS = 200  # the server's limit on a client id (services/frontend/http/schemas.py)
REPORT_EVERY_ROWS = 256  # how often the reader updates the "read N%" progress text


class LoadError(mesh.MeshError):
    """The load cannot start or go on; the CLI prints it and exits non-zero."""


class Article(msgspec.Struct, omit_defaults=True):
    """One article as POST /articles takes it (no id: the server derives one)."""

    publication: str
    content: str
    id: str | None = None


@dataclass(frozen=True)
class Skip:
    """A row that is not sent, and why (the summary counts skips by reason)."""

    reason: str


Row = Article | Skip
Reader = Callable[[Iterable[str], str | None], Iterator[Row]]


# --- Files -------------------------------------------------------------------------------


def file_format(path: Path, given: str | None) -> str:
    """`given` (from --format), else the format the extension names."""
    if given:
        return given
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise LoadError(
            f"cannot tell the format of {path.name} from its extension: give --format "
            f"({', '.join(sorted(READERS))})"
        ) from None


def file_rows(
    path: Path,
    fmt: str,
    publication: str | None = None,
    repeat: int = 1,
    on_position: Callable[[int], None] | None = None,
) -> Iterator[Row]:
    """The file `repeat` times, read again each time (never held in memory);
    `on_position` gets the bytes read over all the copies."""
    size = path.stat().st_size
    for copy in range(repeat):
        done = copy * size

        def position(at: int, done: int = done) -> None:
            if on_position is not None:
                on_position(done + at)

        for row in read_file(path, fmt, publication, position):
            yield distinct_copy(row, copy)


def read_file(
    path: Path,
    fmt: str,
    publication: str | None = None,
    on_position: Callable[[int], None] | None = None,
) -> Iterator[Row]:
    """Stream the rows of a file. `on_position(bytes_read)` is called now and then."""
    with path.open("rb") as raw:
        # utf-8-sig drops a BOM; undecodable bytes become U+FFFD rather than ending a long
        # load at row one million. newline="" is what csv needs (quoted newlines).
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        for n, row in enumerate(READERS[fmt](text, publication)):
            if on_position is not None and n % REPORT_EVERY_ROWS == 0:
                on_position(raw.tell())
            yield row


def distinct_copy(row: Row, copy: int) -> Row:
    """The `copy`-th repetition of a row: copies after the first get their own id, so the
    mesh counts every copy (the same id twice is counted once)."""
    if copy == 0 or isinstance(row, Skip):
        return row
    base = row.id or article_id(row.publication, row.content)
    ident = f"{base}~r{copy}"
    if len(ident) > MAX_ID_CHARS:
        ident = article_id(f"repeat {copy}", base)
    return Article(row.publication, row.content, ident)


def limited(rows: Iterable[Row], limit: int | None) -> Iterator[Row]:
    """Stop after `limit` articles (skipped rows do not count)."""
    if limit is None:
        yield from rows
        return
    if limit <= 0:
        return
    sent = 0
    for row in rows:
        yield row
        if isinstance(row, Article):
            sent += 1
            if sent >= limit:
                return


# --- Formats -----------------------------------------------------------------------------


def read_jsonl(lines: Iterable[str], publication: str | None = None) -> Iterator[Row]:
    """JSON Lines: one object per line; blank lines are not rows."""
    decoder = msgspec.json.Decoder()
    for line in lines:
        if not line.strip():
            continue
        try:
            item = decoder.decode(line)
        except msgspec.DecodeError:
            yield Skip("malformed JSON line")
            continue
        if not isinstance(item, dict):
            yield Skip("malformed JSON line")
            continue
        yield make_row(item.get("publication") or publication, item.get("content"), item.get("id"))


def read_csv(stream: Iterable[str], publication: str | None = None) -> Iterator[Row]:
    """CSV with a header: `publication`, `content` or `article`, and `id` if present."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    names = [name.strip().lower() for name in header]
    pub_at = _column(names, "publication")
    content_at = _column(names, "content", "article")
    id_at = _column(names, "id")
    if content_at is None or (pub_at is None and not publication):
        raise LoadError(
            "the CSV header must name a `publication` column (or give --publication) and a "
            f"`content` or `article` column; it has: {', '.join(header)}"
        )

    def cell(record: list[str], at: int | None) -> str | None:
        return record[at] if at is not None and at < len(record) else None

    for record in reader:
        if not record:  # a blank line
            continue
        yield make_row(
            cell(record, pub_at) or publication, cell(record, content_at), cell(record, id_at)
        )


def _column(names: Sequence[str], *wanted: str) -> int | None:
    """The index of the first of `wanted` in the header, if any."""
    for name in wanted:
        if name in names:
            return names.index(name)
    return None


def read_text(lines: Iterable[str], publication: str | None) -> Iterator[Row]:
    """One article per line, all of one publication; a blank line is an empty article."""
    if not publication:
        raise LoadError("a text file (one article per line) needs --publication NAME")
    for line in lines:
        yield make_row(publication, line.strip())


READERS: dict[str, Reader] = {"jsonl": read_jsonl, "csv": read_csv, "text": read_text}


# --- Rows --------------------------------------------------------------------------------


def make_row(publication: object, content: object, ident: object = None) -> Row:
    """An article, or the reason the server would reject it: checked here, against the
    server's own schema (ArticleIn), so that one bad row does not get a whole batch
    rejected."""
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)  # CSV and JSONL datasets often number their rows
    fields = {"publication": publication, "content": content}
    if ident is not None and ident != "":
        fields["id"] = ident
    try:
        article = msgspec.convert(fields, ArticleIn)
    except msgspec.ValidationError as exc:
        return Skip(_skip_reason(str(exc)))
    return Article(article.publication, article.content, article.id)


def _skip_reason(error: str) -> str:
    """A short, countable reason from msgspec's message (which names the field)."""
    if "`$.content`" in error or "field `content`" in error:
        return "empty or missing content"
    if "length <= " in error and "`$.publication`" in error:
        return f"publication over {MAX_PUBLICATION_CHARS} characters"
    if "`$.publication`" in error or "field `publication`" in error:
        return "empty or missing publication"
    return "invalid id"
