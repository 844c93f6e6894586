"""The read API through the Falcon app, on a real SQLite store."""

from __future__ import annotations

import base64

import msgspec
import pytest

from common.messages import Entity, Extraction, entity_key


def commit(store, ident: str, pub: str, *texts: str) -> None:
    entities = [Entity(entity_key(t, "ORG"), t, "ORG", 1) for t in texts]
    store.commit([Extraction(ident, pub, entities, "local", 1)])


def test_publications_and_entities(client, store):
    commit(store, "a1", "Daily", "Qantas", "BHP")
    commit(store, "a2", "Daily", "Qantas")
    commit(store, "b1", "a/b", "Telstra")
    assert client.simulate_get("/publications").json == {
        "publications": [{"name": "Daily", "articles": 2}, {"name": "a/b", "articles": 1}]
    }
    page = client.simulate_get("/publications/Daily/entities", params={"limit": "1"}).json
    assert [e["text"] for e in page["entities"]] == ["Qantas"]
    rest = client.simulate_get(
        "/publications/Daily/entities", params={"cursor": page["next_cursor"]}
    ).json
    assert [e["text"] for e in rest["entities"]] == ["BHP"] and rest["next_cursor"] is None
    slashed = client.simulate_get("/entities", params={"publication": "a/b"}).json
    assert [e["text"] for e in slashed["entities"]] == ["Telstra"]


def test_read_errors(client, store):
    commit(store, "a1", "Daily", "Qantas")
    assert client.simulate_get("/publications/Nope/entities").status_code == 404
    assert client.simulate_get("/entities").status_code == 400  # publication is required
    bad_cursor = client.simulate_get("/publications/Daily/entities", params={"cursor": "!!"})
    assert bad_cursor.status_code == 400 and bad_cursor.json["title"] == "Invalid cursor"
    too_many = client.simulate_get("/publications/Daily/entities", params={"limit": "100000"})
    assert too_many.status_code == 400
    assert client.simulate_get("/health").json == {"status": "ok"}


def cursor(count: int, text: str, key: str) -> str:
    """A cursor as the store writes one (msgpack, base64url), with any values."""
    raw = msgspec.msgpack.encode([count, text, key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "value",
    [
        cursor(2**63, "Qantas", entity_key("Qantas", "ORG")),  # over SQLite's INTEGER
        cursor(2**64 - 1, "Qantas", entity_key("Qantas", "ORG")),
        cursor(-1, "Qantas", entity_key("Qantas", "ORG")),
        cursor(1, "Qantas", "caf\u00e9"),  # a key Firestore would order differently
    ],
)
def test_a_well_formed_cursor_the_store_cannot_use_is_400(client, store, value):
    commit(store, "a1", "Daily", "Qantas")
    result = client.simulate_get("/publications/Daily/entities", params={"cursor": value})
    assert result.status_code == 400, result.text
    assert result.json["title"] == "Invalid cursor"


def test_status_and_ready(client, gate, board):
    status = client.simulate_get("/status")
    assert status.status_code == 200
    assert status.json["state"] == "accepting" and status.json["backlog"] == 3
    ready = client.simulate_get("/ready")
    assert ready.status_code == 200 and ready.json["ready"] is True
    gate.why = "writes are stopped"
    board.summary = None
    not_ready = client.simulate_get("/ready")
    assert not_ready.status_code == 503
    assert not_ready.json["checks"]["accepting"] == "writes are stopped"
    assert "control server" in not_ready.json["checks"]["ledger"]
    assert not_ready.json["checks"]["store"] == "ok"
    assert client.simulate_get("/status").status_code == 503


def test_metrics_count_accepted_and_rejected_writes(client):
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[tuple[str, tuple], float]:
        text = client.simulate_get("/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    before = scrape()
    auth = {"Authorization": "Bearer test-key-0123456789abcdef"}
    ok = client.simulate_post(
        "/articles",
        json=[{"publication": "P", "content": f"Text {i} on Canberra."} for i in range(3)],
        headers=auth,
    )
    assert ok.status_code == 202
    assert (
        client.simulate_post("/articles", json={"publication": "P"}, headers=auth).status_code
        == 422
    )
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("ingest_articles_accepted_total") == 3
    assert delta("ingest_articles_journaled_total") == 3
    assert delta("ingest_requests_rejected_total", reason="invalid") == 1
    assert (
        delta("ingest_http_request_duration_seconds_count", route="/articles", method="POST") == 2
    )
    assert after[("ingest_pipeline_state", (("state", "accepting"),))] == 1
    assert after[("ingest_processes", (("stage", "extractor"),))] == 2
    assert after[("ingest_control_up", ())] == 1
