"""Posting without a mesh: batching under the body limit, Retry-After, and posting against
an in-process HTTP handler (httpx.MockTransport): retries, rejections, pacing."""

from __future__ import annotations

import itertools
import json
import threading

import httpx
import pytest

from loader import poster
from loader.cli import run_load
from loader.poster import Batch, LoadOptions, batches, retry_after_seconds
from loader.readers import Article, LoadError, Skip


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


def test_retry_after() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(None, default=1.5) == 1.5
    assert retry_after_seconds("soon", default=1.0) == 1.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("99999") == 300.0  # capped


# --- Posting -----------------------------------------------------------------------------


Scripted = tuple[int, dict[str, str], str] | type[httpx.TransportError]


class FakeFrontend:
    """POST /articles answers from a script (then 202); GET /health is 200. A script entry
    is a response (status, headers, body) or a transport error to raise."""

    def __init__(self, script: list[Scripted] | None = None) -> None:
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
                entry = self.script.pop(0)
                if isinstance(entry, type):
                    raise entry("scripted failure", request=request)
                status, headers, text = entry
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


def test_every_client_of_every_run_shares_one_tls_context() -> None:
    """httpx builds a TLS context per client otherwise, loading the CA bundle each time:
    ~40 ms of CPU per client, plain-HTTP URLs included."""
    poster.tls_context.cache_clear()
    for _ in range(2):
        result = run_load([Article("P", f"t{i}") for i in range(20)], options(FakeFrontend()))
        assert result.ok
    uses = poster.tls_context.cache_info()
    # Built once; asked for by each run's reachability check and each of its 2 posters.
    assert uses.misses == 1 and uses.hits + uses.misses == 2 * (1 + 2)


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


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff of milliseconds, not seconds (read when a Loader is made)."""
    monkeypatch.setattr(poster, "BACKOFF_FIRST", 0.001)
    monkeypatch.setattr(poster, "BACKOFF_MAX", 0.002)
    monkeypatch.setattr(poster, "BACKOFF_JITTER", 0.001)


@pytest.mark.usefixtures("quick_backoff")
def test_connection_errors_and_5xx_are_retried_and_503_waits_apart() -> None:
    frontend = FakeFrontend(
        [
            httpx.ConnectError,
            (503, {"Retry-After": "0"}, "starting"),
            (500, {}, "oops"),
            httpx.ReadTimeout,
            (503, {"Retry-After": "0"}, "starting"),
        ]
    )
    result = run_load([Article("P", "t", "i0")], options(frontend, concurrency=1))
    assert frontend.posted == [["i0"]] * 6
    assert result.ok and result.accepted == 1 and len(result.latencies) == 1
    assert result.requests == 6 and result.retried == 5 and result.retried_unavailable == 2


@pytest.mark.usefixtures("quick_backoff")
def test_failures_in_a_row_end_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poster, "CONNECT_ATTEMPTS", 3)
    # 503s in between do not use up attempts: the 3rd failure, the 5th POST, ends the run.
    frontend = FakeFrontend(
        [
            (502, {}, "bad gateway"),
            (503, {"Retry-After": "0"}, "starting"),
            httpx.ConnectError,
            (503, {"Retry-After": "0"}, "starting"),
            (502, {}, "bad  gateway"),
        ]
    )
    result = run_load([Article("P", f"t{i}") for i in range(6)], options(frontend, concurrency=1))
    assert len(frontend.posted) == 5
    assert result.error == "502 after 3 attempts: bad gateway"
    assert result.requests == 5 and result.retried == 4 and result.retried_unavailable == 2
    assert result.unsent == 6 and result.accepted == 0 and not result.ok

    frontend = FakeFrontend([httpx.ConnectError] * 3)
    result = run_load([Article("P", "t")], options(frontend, concurrency=1))
    assert result.error is not None
    assert result.error.startswith("cannot reach http://mesh.test/articles after 3 attempts")
    assert result.requests == 3 and result.retried == 2 and result.unsent == 1


def test_503_for_too_long_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poster, "MAX_UNAVAILABLE_SECONDS", 0.2)
    frontend = FakeFrontend([(503, {"Retry-After": "0.05"}, "not  accepting")] * 100)
    result = run_load([Article("P", "t")], options(frontend, concurrency=1))
    assert result.error is not None and result.error.endswith("s: not accepting")
    assert result.error.startswith("503 for ")
    assert 1 <= result.retried_unavailable == result.retried == result.requests - 1 <= 6
    assert result.unsent == 1 and result.accepted == 0 and not result.ok
