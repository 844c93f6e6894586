"""End to end: real gunicorn, ZeroMQ, Circus, spaCy and SQLite, with real news articles."""

from __future__ import annotations

from collections import Counter

import httpx

from store import open_store
from tests.e2e.conftest import RunningMesh, start_firestore_mesh, stop_mesh
from tests.oracle import Oracle, entity_id


def stored_counts(running: RunningMesh) -> tuple[Counter, dict[str, Counter]]:
    """Articles and entity counts per publication, read back through the HTTP read API."""
    articles: Counter = Counter()
    entities: dict[str, Counter] = {}
    for pub in running.http.get("/publications").json()["publications"]:
        articles[pub["name"]] = pub["articles"]
        counter = entities.setdefault(pub["name"], Counter())
        cursor = None
        while True:
            params = {"limit": 97} | ({"cursor": cursor} if cursor else {})
            page = running.http.get(f"/publications/{pub['name']}/entities", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            for entity in body["entities"]:
                ident = entity_id(entity["text"], entity["label"])
                assert ident not in counter, "an entity appeared on two pages"
                counter[ident] = entity["count"]
            cursor = body["next_cursor"]
            if cursor is None:
                break
    return articles, entities


def test_corpus_is_counted_exactly_once(running_mesh, corpus_articles, oracle):
    check_corpus_counted_once(running_mesh, corpus_articles, oracle)


def test_corpus_is_counted_exactly_once_on_firestore(
    firestore_emulator, tmp_path, corpus_articles, oracle
):
    running = start_firestore_mesh(firestore_emulator, tmp_path)
    try:
        check_corpus_counted_once(running, corpus_articles, oracle)
    finally:
        stop_mesh(running)


def check_corpus_counted_once(running_mesh: RunningMesh, corpus_articles, oracle: Oracle) -> None:
    # Posted in batches of 50, with the first batch sent twice: duplicates count once.
    batches = [corpus_articles[i : i + 50] for i in range(0, len(corpus_articles), 50)]
    accepted_ids: set[str] = set()
    for batch in [batches[0], *batches]:
        response = running_mesh.post(batch)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == len(batch)
        accepted_ids.update(response.json()["ids"])

    running_mesh.wait_drained(timeout=300)

    want_articles, want_entities = oracle.counts(corpus_articles)
    got_articles, got_entities = stored_counts(running_mesh)
    unique_pairs = {(a["publication"], a["content"]) for a in corpus_articles}
    assert len(unique_pairs) < len(corpus_articles)  # the corpus does repeat itself
    assert sum(want_articles.values()) == len(accepted_ids) == len(unique_pairs)
    assert got_articles == want_articles
    assert got_entities == want_entities

    store = open_store(running_mesh.settings)
    try:
        assert store.counted(sorted(accepted_ids)) == accepted_ids
    finally:
        store.close()

    # The same articles again, one by one through the course client's route: accepted,
    # and nothing changes once the mesh has drained again.
    for article in corpus_articles[:20]:
        response = running_mesh.http.post(
            "/post/enqueue", json=article, headers={"access_token": running_mesh.key}
        )
        assert response.status_code == 201, response.text
    running_mesh.post(corpus_articles[:100])
    running_mesh.wait_drained(timeout=120)
    assert stored_counts(running_mesh) == (got_articles, got_entities)


def test_course_client_route_through_gunicorn(running_mesh):
    # gunicorn drops headers with underscores unless told otherwise: check the real server.
    article = {"publication": "Course", "content": "Barack Obama visited Canberra."}
    wrong = running_mesh.http.post("/post/enqueue", json=article, headers={"access_token": "x"})
    assert wrong.status_code == 403
    missing = running_mesh.http.post("/post/enqueue", json=article)
    assert missing.status_code == 401
    ok = running_mesh.http.post(
        "/post/enqueue", json=article, headers={"access_token": running_mesh.key}
    )
    assert ok.status_code == 201
    running_mesh.wait_drained(timeout=60)
    entities = running_mesh.http.get("/publications/Course/entities").json()["entities"]
    assert {e["text"] for e in entities} >= {"Barack Obama", "Canberra"}


def test_unknown_publication_is_404(running_mesh):
    response = running_mesh.http.get("/publications/Nobody%20Writes%20Here/entities")
    assert response.status_code == 404
    assert response.json()["title"] == "Unknown publication"


def test_bad_body_through_gunicorn_is_rejected_and_not_journaled(running_mesh):
    before = running_mesh.backlog()
    response = httpx.post(
        running_mesh.url + "/articles",
        content=b'{"publication": "X", "content": ',
        headers={"Authorization": f"Bearer {running_mesh.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "Malformed JSON" in response.json()["title"]
    assert running_mesh.backlog() == before


def scrape(running: RunningMesh) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = running.http.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_cover_the_whole_mesh(running_mesh, corpus):
    import time

    articles = [
        {"publication": "Metrics", "content": text, "id": f"m{i}"}
        for i, text in enumerate(corpus[:40])
    ]
    before = scrape(running_mesh)
    assert running_mesh.post(articles).status_code == 202
    running_mesh.wait_drained(timeout=120)
    time.sleep(1.5)  # the ledger refreshes its gauges twice a second
    after = scrape(running_mesh)

    def delta(name: str) -> float:
        return after.get((name, ()), 0.0) - before.get((name, ()), 0.0)

    # Each counter is written by a different process (frontend worker, extractors, saver,
    # ledger): one scrape of the frontend sees them all.
    assert delta("ingest_articles_accepted_total") == 40
    assert delta("ingest_articles_journaled_total") == 40
    assert delta("ingest_articles_extracted_total") >= 40
    assert delta("ingest_articles_committed_total") == 40
    assert delta("ingest_articles_acknowledged_total") >= 40
    assert delta("ingest_store_commit_seconds_count") >= 1
    assert delta("ingest_extraction_batch_seconds_count") >= 1
    assert after[("ingest_journal_backlog_articles", ())] == 0
    assert after[("ingest_pipeline_state", (("state", "accepting"),))] == 1
    processes = {
        dict(labels)["stage"]: value
        for (name, labels), value in after.items()
        if name == "ingest_processes"
    }
    assert processes["extractor"] >= 2 and processes["ledger"] == 1
    assert processes["frontend"] == running_mesh.settings.web_workers
