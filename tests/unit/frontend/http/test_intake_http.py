"""POST /articles and /post/enqueue through the Falcon app, with a real journal."""

from __future__ import annotations

import json
import sqlite3

import falcon.testing
import msgspec
import pytest

from common.messages import article_id
from services.frontend.http.app import create_app
from services.frontend.http.resources import WritesInProgress
from services.frontend.journal import Journal
from tests.unit.frontend.http.conftest import KEY, Gate, MeshStatusBoard, journaled

AUTH = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json", **AUTH}
NDJSON = {"Content-Type": "application/x-ndjson", **AUTH}
GOOD = {"publication": "Pub", "content": "Angela Merkel visited Paris."}


def dumps(value) -> bytes:
    return json.dumps(value).encode()


# (case, headers, body, status, words the error must contain)
BAD_INPUTS = [
    ("malformed JSON", JSON, b'{"publication": "P", ', 400, "Malformed JSON"),
    ("empty body", JSON, b"", 400, "empty"),
    ("not UTF-8", JSON, b'{"publication": "P", "content": "caf\xe9"}', 400, "UTF-8"),
    ("no content type", AUTH, dumps(GOOD), 415, "Content-Type"),
    ("wrong content type", {**AUTH, "Content-Type": "text/plain"}, dumps(GOOD), 415, "text/plain"),
    (
        "latin-1 charset",
        {**AUTH, "Content-Type": "application/json; charset=latin-1"},
        dumps(GOOD),
        415,
        "UTF-8",
    ),
    ("body too large", JSON, dumps({"publication": "P", "content": "x" * 5000}), 413, "4096"),
    ("missing content", JSON, dumps({"publication": "P"}), 422, "content"),
    ("missing publication", JSON, dumps({"content": "text"}), 422, "publication"),
    ("empty content", JSON, dumps({"publication": "P", "content": ""}), 422, "content"),
    ("blank content", JSON, dumps({"publication": "P", "content": "  \n "}), 422, "not blank"),
    ("empty publication", JSON, dumps({"publication": "", "content": "t"}), 422, "publication"),
    ("non-string content", JSON, dumps({"publication": "P", "content": 42}), 422, "content"),
    (
        "non-string publication",
        JSON,
        dumps({"publication": ["P"], "content": "t"}),
        422,
        "publication",
    ),
    (
        "publication over 200 chars",
        JSON,
        dumps({"publication": "P" * 201, "content": "t"}),
        422,
        "publication",
    ),
    ("unknown field", JSON, dumps({**GOOD, "author": "me"}), 422, "author"),
    ("blank id", JSON, dumps({**GOOD, "id": " "}), 422, "id"),
    ("not an object", JSON, dumps("just a string"), 422, "Expected"),
    ("empty batch", JSON, dumps([]), 422, "length"),
    ("over-long batch", JSON, dumps([GOOD] * 6), 422, "length"),
    (
        "bad item in batch",
        JSON,
        dumps([GOOD, GOOD, {"publication": "P", "content": 1}]),
        422,
        "$[2].content",
    ),
    ("empty NDJSON", NDJSON, b"\n\n", 422, "no article"),
    ("over-long NDJSON", NDJSON, b"\n".join([dumps(GOOD)] * 6), 422, "at most 5"),
    ("bad NDJSON line", NDJSON, dumps(GOOD) + b"\n{oops\n", 400, "line 2"),
    ("invalid NDJSON item", NDJSON, dumps(GOOD) + b"\n" + dumps({"content": "t"}), 422, "line 2"),
    (
        "publication with a control character",
        JSON,
        dumps({"publication": "P\x07", "content": "t"}),
        422,
        "found U+0007 (a control character) at character 2 - at `$.publication`",
    ),
    (
        "publication with a bidirectional control",
        JSON,
        dumps([GOOD, {"publication": "ab\u202ec", "content": "t"}]),
        422,
        "U+202E RIGHT-TO-LEFT OVERRIDE (a bidirectional control) at character 3 - at "
        "`$[1].publication`",
    ),
    (
        "publication with a zero-width character",
        NDJSON,
        dumps(GOOD) + b"\n" + dumps({"publication": "\u200bP", "content": "t"}),
        422,
        "line 2: Expected a name without control, bidirectional-control or zero-width "
        "characters; found U+200B ZERO WIDTH SPACE (a zero-width character) at character 1",
    ),
    (
        "publication ending in a newline",
        JSON,
        dumps({"publication": "P\n", "content": "t"}),
        422,
        "U+000A (a control character)",
    ),
    ("blank publication", JSON, dumps({"publication": " \u3000", "content": "t"}), 422, "blank"),
    # Python's `$` matches before a final "\n": the id's pattern must not end with it.
    ("id ending in a newline", JSON, dumps({**GOOD, "id": "a1\n"}), 422, "`$.id`"),
]


@pytest.mark.parametrize(
    ("headers", "body", "status", "words"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_rejected_with_a_json_reason_and_nothing_journaled(
    client, journal, headers, body, status, words
):
    result = client.simulate_post("/articles", body=body, headers=headers)
    assert result.status_code == status, result.text
    error = result.json
    assert error["title"]
    assert words in error["title"] + " " + (error.get("description") or "")
    assert journaled(journal) == []


def test_one_article_is_journaled_with_a_content_id(client, journal):
    result = client.simulate_post("/articles", body=dumps(GOOD), headers=JSON)
    assert result.status_code == 202
    ident = article_id(GOOD["publication"], GOOD["content"])
    assert result.json == {"accepted": 1, "ids": [ident]}
    assert journaled(journal) == [ident]


def test_batch_client_ids_and_duplicates(client, journal):
    batch = [GOOD, {**GOOD, "id": "client-7"}, GOOD]
    result = client.simulate_post("/articles", body=dumps(batch), headers=JSON)
    assert result.status_code == 202
    assert result.json["accepted"] == 3
    assert result.json["ids"][1] == "client-7"
    assert sorted(journaled(journal)) == sorted({*result.json["ids"]})
    again = client.simulate_post("/articles", body=dumps(batch), headers=JSON)
    assert again.status_code == 202
    assert len(journaled(journal)) == 2


def test_ndjson_batch(client, journal):
    body = b"\n".join(dumps({**GOOD, "content": f"Text {i} about Canberra."}) for i in range(5))
    result = client.simulate_post("/articles", body=body + b"\n", headers=NDJSON)
    assert result.status_code == 202, result.text
    assert len(journaled(journal)) == 5


# What str.splitlines() also ends a line at, and a JSON string may hold raw (the others
# it splits at, such as U+000B or U+001E, are control characters JSON must escape).
LINE_BREAKS_IN_STRINGS = ["\x85", "\u2028", "\u2029"]


def test_ndjson_lines_end_at_newline_only(client, journal):
    items = [
        {"publication": "Pub", "content": f"Canberra{brk}Sydney, line {n}"}
        for n, brk in enumerate(LINE_BREAKS_IN_STRINGS)
    ]
    as_json = [json.dumps(item, ensure_ascii=False).encode() for item in items]
    # "\r\n" ends a line as well as "\n"; blank lines are skipped.
    body = as_json[0] + b"\r\n" + as_json[1] + b"\n\r\n" + as_json[2] + b"\r\n"
    result = client.simulate_post("/articles", body=body, headers=NDJSON)
    assert result.status_code == 202, result.text
    ids = [article_id(i["publication"], i["content"]) for i in items]
    assert result.json == {"accepted": 3, "ids": ids}
    assert [row.content for row in journal.rows(ids)] == [i["content"] for i in items]
    # The same article as one JSON object is the same article.
    single = client.simulate_post("/articles", body=as_json[1], headers=JSON)
    assert single.status_code == 202 and single.json["ids"] == [ids[1]]


HIDDEN_IN_NAMES = [
    *map(chr, [*range(0x00, 0x20), *range(0x7F, 0xA0)]),  # control characters (Cc)
    *"\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",  # bidi
    *"\u200b\u200c\u200d\u2060\ufeff",  # zero-width
]


@pytest.mark.parametrize("at", ["start", "middle", "end"])
def test_publication_names_with_hidden_characters_are_refused(client, journal, at):
    for char in HIDDEN_IN_NAMES:
        name = {"start": f"{char}Pub", "middle": f"P{char}ub", "end": f"Pub{char}"}[at]
        for path, headers in [("/articles", JSON), ("/post/enqueue", {"access_token": KEY})]:
            result = client.simulate_post(
                path, body=dumps({"publication": name, "content": "Text."}), headers=headers
            )
            assert result.status_code == 422, (path, hex(ord(char)), result.text)
            assert "zero-width" in result.json["description"], result.text
    assert journaled(journal) == []


@pytest.mark.parametrize(
    "name",
    ["Le Monde", " ABC News", "Süddeutsche Zeitung", "朝日新聞", "Ha\u2019aretz", "Le\u00a0Soir"],
)
def test_publication_names_of_visible_characters_are_accepted(client, journal, name):
    result = client.simulate_post(
        "/articles", body=dumps({"publication": name, "content": "Text."}), headers=JSON
    )
    assert result.status_code == 202, result.text
    assert [row.publication for row in journal.rows(result.json["ids"])] == [name]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": "Basic " + KEY}, 401),
        ({"X-API-Key": "wrong"}, 403),
        ({"X-API-Key": KEY}, 202),
        ({"Authorization": f"bearer {KEY}"}, 202),
    ],
)
def test_api_key(client, journal, headers, status):
    result = client.simulate_post(
        "/articles", body=dumps(GOOD), headers={"Content-Type": "application/json", **headers}
    )
    assert result.status_code == status
    if status == 401:
        assert result.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert len(journaled(journal)) == (1 if status == 202 else 0)


def test_course_client_route(client, journal):
    body = dumps({"content": GOOD["content"], "publication": "Pub", "extra": "ignored"})
    assert client.simulate_post("/post/enqueue", body=body).status_code == 401
    wrong = client.simulate_post("/post/enqueue", body=body, headers={"access_token": "nope"})
    assert wrong.status_code == 403
    ok = client.simulate_post("/post/enqueue", body=body, headers={"access_token": KEY})
    assert ok.status_code == 201
    assert journaled(journal) == [article_id("Pub", GOOD["content"])]
    blank = client.simulate_post(
        "/post/enqueue",
        body=dumps({"content": " ", "publication": "P"}),
        headers={"access_token": KEY},
    )
    assert blank.status_code == 422
    assert len(journaled(journal)) == 1


def test_journal_failure_is_503_not_2xx(client, journal, settings):
    # A real lock, held by another connection past the journal's busy timeout.
    blocker = sqlite3.connect(settings.journal_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        journal._conn.execute("PRAGMA busy_timeout=100")
        result = client.simulate_post("/articles", body=dumps(GOOD), headers=JSON)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.status_code == 503
    assert result.headers["Retry-After"] == str(settings.retry_after_seconds)
    assert result.json["title"] == "Journal unavailable"
    assert journaled(journal) == []


def test_writes_are_refused_while_not_accepting(client, journal, gate, settings):
    gate.why = "writes are stopped"
    for path, headers in [("/articles", JSON), ("/post/enqueue", {"access_token": KEY})]:
        result = client.simulate_post(path, body=dumps(GOOD), headers=headers)
        assert result.status_code == 503
        assert result.headers["Retry-After"] == str(settings.retry_after_seconds)
        assert result.json == {"title": "Not accepting writes", "description": "writes are stopped"}
    assert journaled(journal) == []
    gate.why = ""
    assert client.simulate_post("/articles", body=dumps(GOOD), headers=JSON).status_code == 202


def test_a_full_backlog_is_503_with_retry_after(client, journal, store, settings):
    batch = [{**GOOD, "id": f"b{i}"} for i in range(5)]
    assert client.simulate_post("/articles", body=dumps(batch), headers=JSON).status_code == 202
    full = create_app(
        msgspec.structs.replace(settings, max_backlog=5),
        journal,
        store,
        Gate(),
        MeshStatusBoard(),
    )
    result = falcon.testing.TestClient(full).simulate_post(
        "/articles", body=dumps({**GOOD, "id": "late"}), headers=JSON
    )
    assert result.status_code == 503
    assert result.json["title"] == "Backlog full"
    assert result.headers["Retry-After"] == str(settings.retry_after_seconds)
    assert "late" not in journaled(journal)


def test_writes_in_progress_hold_back_the_confirmation_of_a_newer_state():
    in_progress = WritesInProgress()

    class Heard:
        seq = 4

        def accepting(self) -> tuple[bool, str]:
            return True, ""

        def heard_seq(self) -> int:
            return self.seq

    heard = Heard()
    assert in_progress.confirmable(5) == 5
    with in_progress.admitted(heard):
        heard.seq = 5  # stop-writes is heard while the write runs
        assert in_progress.confirmable(5) == 4
        with in_progress.admitted(heard):
            assert in_progress.confirmable(5) == 4
    assert in_progress.confirmable(5) == 5


def test_a_closed_gate_answers_503_and_journals_nothing(client, journal, settings):
    Journal(settings.journal_path).set_gate("stopped", 2)  # another process heard it first
    response = client.simulate_post(
        "/articles",
        json={"publication": "P", "content": "Text."},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 503
    assert response.json["description"] == "writes are stopped"
    assert response.headers["Retry-After"]
    assert journaled(journal) == []


def test_the_ledger_is_signalled_after_each_commit_that_added_rows(settings, journal, store, gate):
    signals: list[list[str]] = []
    app = create_app(
        settings,
        journal,
        store,
        gate,
        MeshStatusBoard(),
        on_journaled=lambda: signals.append(journaled(journal)),
    )
    client = falcon.testing.TestClient(app)
    batch = [{**GOOD, "id": "s1"}, {**GOOD, "id": "s2"}]
    assert client.simulate_post("/articles", body=dumps(batch), headers=JSON).status_code == 202
    assert signals == [["s1", "s2"]]  # once per request, with the rows already committed
    # Nothing new (known ids), nothing journaled (refused): no signal.
    assert client.simulate_post("/articles", body=dumps(batch), headers=JSON).status_code == 202
    gate.why = "stopping"
    late = dumps({**GOOD, "id": "s3"})
    assert client.simulate_post("/articles", body=late, headers=JSON).status_code == 503
    assert signals == [["s1", "s2"]]
