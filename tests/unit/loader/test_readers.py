"""Reading datasets without a mesh: each format, skips by reason, repeats and limits."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from common.messages import article_id
from loader.corpora import lee_rows
from loader.readers import (
    Article,
    LoadError,
    Row,
    Skip,
    distinct_copy,
    file_format,
    file_rows,
    limited,
    make_row,
    read_file,
)

ALL_THE_NEWS_HEADER = ",Unnamed: 0,date,year,month,day,author,title,article,url,section,publication"


def articles(rows: list[Row]) -> list[Article]:
    return [r for r in rows if isinstance(r, Article)]


def skips(rows: list[Row]) -> Counter[str]:
    return Counter(r.reason for r in rows if isinstance(r, Skip))


def test_jsonl_reads_objects_and_skips_what_the_server_would_reject(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"publication": "A", "content": "one", "id": "x1"}),
                "",  # blank lines are not rows
                json.dumps({"publication": "B", "content": "two", "id": 7, "extra": True}),
                json.dumps({"publication": "A", "content": "   "}),
                json.dumps({"publication": "", "content": "three"}),
                "{not json",
                json.dumps(["a", "list"]),
                json.dumps({"publication": "P" * 201, "content": "long name"}),
                json.dumps({"publication": "A", "content": "spaced id", "id": "a b"}),
            ]
        )
        + "\n"
    )
    rows = list(read_file(path, file_format(path, None)))
    assert articles(rows) == [Article("A", "one", "x1"), Article("B", "two", "7")]
    assert skips(rows) == {
        "empty or missing content": 1,
        "empty or missing publication": 1,
        "malformed JSON line": 2,
        "publication over 200 characters": 1,
        "invalid id": 1,
    }


def test_ndjson_extension_and_publication_fallback(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_text('{"content": "no publication"}\r\n{"publication": "Own", "content": "c"}\r\n')
    assert file_format(path, None) == "jsonl"
    rows = list(read_file(path, "jsonl", publication="Fallback"))
    assert rows == [Article("Fallback", "no publication"), Article("Own", "c")]


def test_unknown_extension_needs_format(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="--format"):
        file_format(tmp_path / "data.bin", None)
    assert file_format(tmp_path / "data.bin", "csv") == "csv"
    assert file_format(tmp_path / "lee_background.cor", None) == "text"


def test_all_the_news_csv_with_a_huge_field(tmp_path: Path) -> None:
    # The exact header of "All the News 2.0"; one article well over csv's default 128 KiB
    # field limit, with quotes, commas and newlines inside it.
    huge = ('He said, "yes".\nAnd then: more, ' * 8000).strip()
    assert len(huge.encode()) > 200_000
    path = tmp_path / "all-the-news-2-1.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        f.write(ALL_THE_NEWS_HEADER + "\n")
        writer = csv.writer(f)
        writer.writerow(
            [0, 0, "2016-12-09 18:31:00", 2016, 12, 9, "Lee Drutman", "We should take "
             "concerns about the health of liberal democracy seriously", huge,
             "https://www.vox.com/x", "", "Vox"]
        )  # fmt: skip
        writer.writerow([1, 1, "2016-10-07", 2016, 10, 7, "", "t", "Short piece.", "u", "", "CNN"])
        writer.writerow([2, 2, "2016-10-07", 2016, 10, 7, "", "t", "", "u", "", "CNN"])
        writer.writerow([3, 3, "2016-10-07", 2016, 10, 7, "", "t", "Nameless.", "u", "", ""])
    rows = list(read_file(path, file_format(path, None)))
    assert articles(rows) == [Article("Vox", huge), Article("CNN", "Short piece.")]
    assert skips(rows) == {"empty or missing content": 1, "empty or missing publication": 1}


def test_csv_with_content_and_id_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("\ufeffID,Publication,Content\nk1,A,first\n\nk2,B,second\n", encoding="utf-8")
    rows = list(read_file(path, "csv"))
    assert rows == [Article("A", "first", "k1"), Article("B", "second", "k2")]


def test_csv_header_must_name_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("title,body\nt,b\n")
    with pytest.raises(LoadError, match="publication"):
        list(read_file(path, "csv"))
    # With --publication only the text column is needed.
    path.write_text("title,article\nt,b\n")
    assert list(read_file(path, "csv", publication="Given")) == [Article("Given", "b")]


def test_text_one_article_per_line(tmp_path: Path) -> None:
    path = tmp_path / "lee.cor"
    path.write_text("First article.  \n\nSecond article.\n")
    rows = list(read_file(path, file_format(path, None), publication="ABC"))
    assert rows == [
        Article("ABC", "First article."),
        Skip("empty or missing content"),
        Article("ABC", "Second article."),
    ]
    with pytest.raises(LoadError, match="--publication"):
        list(read_file(path, "text"))


def test_repeated_copies_get_distinct_ids(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"publication": "A", "content": "same"}\n{"publication": "A", "content": "x", '
        '"id": "given"}\n{"publication": "A", "content": ""}\n'
    )
    positions: list[int] = []
    rows = list(file_rows(path, "jsonl", repeat=3, on_position=positions.append))
    posted = articles(rows)
    assert len(posted) == 6 and len(skips(rows)) == 1 and sum(skips(rows).values()) == 3
    # The first copy is sent as it is; the server derives the same id the copies build on.
    assert posted[0].id is None and posted[1].id == "given"
    ids = [a.id or article_id(a.publication, a.content) for a in posted]
    assert len(set(ids)) == 6
    assert posted[2].id == f"{article_id('A', 'same')}~r1" and posted[5].id == "given~r2"
    assert positions and positions == sorted(positions)  # the reader moves forward
    long_id = Article("A", "c", "i" * 200)
    assert len(distinct_copy(long_id, 1).id or "") <= 200


def test_lee_rows_and_limit() -> None:
    texts = ["one", "two", "one"]
    rows = list(lee_rows(2, texts))
    assert len(rows) == 6 and len({r.id for r in rows}) == 6
    assert len({r.publication for r in rows}) == 3
    mixed = [Skip("x"), Article("A", "1"), Skip("y"), Article("A", "2"), Article("A", "3")]
    assert list(limited(mixed, 2)) == mixed[:4]
    assert list(limited(mixed, None)) == mixed
    assert list(limited(mixed, 0)) == []


def test_rows_are_checked_against_the_servers_own_schema() -> None:
    # U+001E is whitespace to the server's validator: a row of it would be rejected there.
    assert make_row("P", "\x1e\x1e") == Skip("empty or missing content")
    assert make_row("P" * 201, "text") == Skip("publication over 200 characters")
    assert make_row("P", "text", "has space") == Skip("invalid id")
    assert make_row("P", "text", 7) == Article("P", "text", "7")


def test_publications_the_server_refuses_for_hidden_characters_are_skipped() -> None:
    # The server refuses control, bidirectional-control and zero-width characters in a
    # name (services/frontend/http/schemas.py): such a row would sink its whole batch.
    for name in ("Pub\x07", "Pub\n", "P\u202eub", "\u200bPub", "Pub\ufeff"):
        assert isinstance(make_row(name, "text"), Skip), repr(name)
    assert make_row("Le Monde", "text") == Article("Le Monde", "text")
