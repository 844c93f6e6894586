"""The load tool without a mesh: reading each format, batching, measuring, and posting
against an in-process HTTP handler (httpx.MockTransport)."""

from __future__ import annotations

import csv
import itertools
import json
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from common.messages import article_id
from loader.load import (
    Article,
    Batch,
    LoadError,
    LoadOptions,
    Skip,
    batches,
    distinct_copy,
    file_format,
    file_rows,
    lee_rows,
    limited,
    percentile,
    read_file,
    retry_after_seconds,
    run_load,
)

ALL_THE_NEWS_HEADER = ",Unnamed: 0,date,year,month,day,author,title,article,url,section,publication"


def articles(rows: list) -> list[Article]:
    return [r for r in rows if isinstance(r, Article)]


def skips(rows: list) -> Counter[str]:
    return Counter(r.reason for r in rows if isinstance(r, Skip))


# --- Formats -----------------------------------------------------------------------------


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


# --- Batching ----------------------------------------------------------------------------


def test_batches_respect_count_and_body_size() -> None:
    rows = [Article("P", "w" * (50 + 37 * i % 300), f"id{i}") for i in range(200)]
    limit = 2_000
    cut = list(batches(rows, batch_size=10, max_body_bytes=limit))
    assert all(isinstance(b, Batch) for b in cut)
    sent: list[dict] = []
    for batch in cut:
        assert isinstance(batch, Batch)
        assert len(batch.body) <= limit
        assert 1 <= batch.count <= 10
        decoded = json.loads(batch.body)
        assert len(decoded) == batch.count
        sent += decoded
    assert [a["id"] for a in sent] == [f"id{i}" for i in range(200)]  # all, in order
    assert any(b.count < 10 for b in cut)  # some were cut by size, not count
    # A batch is closed only when the next article would not fit.
    for batch, following in itertools.pairwise(cut):
        assert isinstance(batch, Batch) and isinstance(following, Batch)
        if batch.count < 10:
            first_next = json.dumps(json.loads(following.body)[0], separators=(",", ":"))
            assert len(batch.body) + 1 + len(first_next.encode()) > limit


def test_batches_pass_skips_through_and_skip_oversized_articles() -> None:
    rows = [Article("P", "a"), Skip("empty or missing content"), Article("P", "b" * 500)]
    cut = list(batches(rows, batch_size=100, max_body_bytes=200))
    assert cut[0] == Skip("empty or missing content")
    assert isinstance(cut[1], Skip) and "request limit" in cut[1].reason
    assert cut[2] == Batch(b'[{"publication":"P","content":"a"}]', 1)


# --- Measuring ---------------------------------------------------------------------------


def test_percentiles_interpolate_like_numpy() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    values = list(range(1, 101))  # numpy.percentile(range(1, 101), q)
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([5, 1, 3], 0) == 1 and percentile([5, 1, 3], 100) == 5


def test_retry_after() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(None, default=1.5) == 1.5
    assert retry_after_seconds("soon", default=1.0) == 1.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("99999") == 300.0  # capped


# --- Posting -----------------------------------------------------------------------------


class FakeFrontend:
    """POST /articles answers from a script (then 202); GET /health is 200."""

    def __init__(self, script: list[tuple[int, dict[str, str], str]] | None = None) -> None:
        self.script = list(script or [])
        self.received: list[list[dict]] = []  # accepted bodies
        self.posted: list[list[str]] = []  # the ids of every POST, answered or not
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        assert request.headers["Authorization"] == "Bearer key"
        body = json.loads(request.content)
        with self.lock:
            self.posted.append([a.get("id") for a in body])
            if self.script:
                status, headers, text = self.script.pop(0)
                return httpx.Response(status, headers=headers, text=text)
            self.received.append(body)
        return httpx.Response(202, json={"accepted": len(body), "ids": []})


def options(frontend: FakeFrontend, **changes: object) -> LoadOptions:
    base = LoadOptions(
        url="http://mesh.test", api_key="key", concurrency=2, batch_size=3,
        transport=httpx.MockTransport(frontend),
    )  # fmt: skip
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def test_posting_retries_503_and_counts_rejections() -> None:
    frontend = FakeFrontend(
        [
            (503, {"Retry-After": "0"}, '{"title": "Not accepting writes"}'),
            (422, {}, '{"title": "Invalid article", "description": "$[0].content"}'),
        ]
    )
    rows = [Article("P", f"text {i}", f"i{i}") for i in range(10)] + [Skip("no content")]
    result = run_load(rows, options(frontend, concurrency=1))
    # Batches of 3, 3, 3, 1: the first is answered 503, sent again as it was, and then
    # rejected; the others are accepted.
    assert frontend.posted[0] == frontend.posted[1] == ["i0", "i1", "i2"]
    assert result.accepted == 7 and result.rejected == 3
    assert result.retried == result.retried_unavailable == 1
    assert result.requests == 5
    assert result.skipped == {"no content": 1}
    assert result.first_error is not None and result.first_error.startswith("422")
    assert "$[0].content" in result.first_error
    assert len(result.latencies) == 3 and not result.ok
    received = [a["id"] for body in frontend.received for a in body]
    assert received == [f"i{i}" for i in range(3, 10)]
    summary = result.summary()
    assert summary["accepted"] == 7 and summary["skipped"] == 1
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}
    assert "drained" not in summary
    json.dumps(summary)  # serialisable


def test_all_accepted_is_ok() -> None:
    frontend = FakeFrontend()
    result = run_load([Article("P", f"t{i}") for i in range(20)], options(frontend))
    assert result.ok and result.accepted == 20 and result.retried == 0
    assert sum(len(b) for b in frontend.received) == 20


def test_refused_key_stops_the_run() -> None:
    frontend = FakeFrontend([(403, {}, '{"title": "Forbidden"}')])
    result = run_load([Article("P", f"t{i}") for i in range(30)], options(frontend, concurrency=1))
    assert result.error is not None and "refused" in result.error
    assert result.rejected == 3 and result.accepted == 0 and not result.ok


def test_unreachable_mesh_is_a_clear_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    opts = LoadOptions(url="http://mesh.test", api_key="key", transport=httpx.MockTransport(refuse))
    with pytest.raises(LoadError, match=r"not reachable at http://mesh\.test"):
        run_load([Article("P", "t")], opts)


def test_rate_paces_small_batches() -> None:
    frontend = FakeFrontend()
    rows = [Article("P", f"t{i}") for i in range(30)]
    result = run_load(rows, options(frontend, batch_size=100, rate=40.0))
    # 40 articles/s: batches of 10 (a quarter second each), the 2nd and 3rd wait their turn.
    assert [len(b) for b in frontend.received] == [10, 10, 10]
    assert result.accepted == 30 and result.seconds >= 0.45


def test_rows_are_checked_against_the_servers_own_schema():
    from loader.load import make_row

    # U+001E is whitespace to the server's validator: a row of it would be rejected there.
    assert make_row("P", "\x1e\x1e") == Skip("empty or missing content")
    assert make_row("P" * 201, "text") == Skip("publication over 200 characters")
    assert make_row("P", "text", "has space") == Skip("invalid id")
    assert make_row("P", "text", 7) == Article("P", "text", "7")
