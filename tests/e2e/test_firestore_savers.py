"""Four savers on Google's Firestore emulator: no document written faster than the budget,
and a contended publication survived while the others go on.

The emulator enforces no per-document limit and never answers ABORTED; the contention is
injected at the RPC layer by a gRPC proxy between the savers and the real emulator
(tests/firestore_faults.py), which also audits every commit that reaches the emulator.
"""

from __future__ import annotations

import re
import threading
import time

import httpx

from tests.e2e.conftest import assert_exactly_counted, start_mesh, stop_mesh
from tests.firestore_faults import ContentionProxy, most_writes_in_any_window

CONTENDED = "The Contended Times"
CALM = ["Calm Herald", "Calm Courier", "Calm Gazette"]
FAULT_SECONDS = 8.0
HOTTEST = re.compile(r"^ingest_store_hottest_document_writes_per_second (\S+)$", re.M)


def test_four_savers_keep_every_document_within_budget_and_survive_contention(
    firestore_emulator, tmp_path, corpus, oracle
):
    firestore_emulator.reset()
    proxy = ContentionProxy(firestore_emulator.host).start()
    running = start_mesh(
        tmp_path,
        store="firestore",
        firestore_project=firestore_emulator.project,
        firestore_emulator_host=proxy.host,  # every saver's RPCs go through the proxy
        savers=4,
        extractors=2,
    )
    scraped: list[float] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.wait(1.0):
            try:
                text = httpx.get(running.url + "/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            scraped.extend(float(v) for v in HOTTEST.findall(text))

    scraper = threading.Thread(target=scrape)
    try:
        publications = [CONTENDED, *CALM]
        articles = [
            {"publication": publications[i % 4], "content": text}
            for i, text in enumerate(corpus * 2)  # 600 posts, 293 distinct texts per round
        ]
        scraper.start()
        proxy.contend(CONTENDED)
        fault_started = time.monotonic()
        accepted: dict[str, dict] = {}
        for start in range(0, len(articles), 50):
            batch = articles[start : start + 50]
            response = running.post(batch)
            assert response.status_code == 202, response.text
            accepted.update(zip(response.json()["ids"], batch, strict=True))
        time.sleep(max(0.0, FAULT_SECONDS - (time.monotonic() - fault_started)))
        proxy.contend()  # the contention ends
        fault_ended = time.monotonic()
        running.wait_drained(timeout=300)
        done.set()
        scraper.join()

        # Nothing lost, nothing counted twice: the oracle's counts, markers for every id.
        assert_exactly_counted(running, accepted, oracle)

        # The contended publication was refused during the fault, and the others were
        # committed meanwhile: the saver backed it off alone.
        contended_id = "The%20Contended%20Times"
        assert any(pub == contended_id for _, pub in proxy.aborted)
        during = [c for c in proxy.commits if fault_started <= c.at < fault_ended]
        calm_during = {d for c in during for d in c.documents if d.count("/") == 1}
        assert len(calm_during) >= 2, f"other publications stalled: {calm_during}"
        assert not any(f"publications/{contended_id}" in c.documents for c in during)

        # No document took more than its budget (1 write/s), across all four savers: at
        # most 10 writes within any 10 s, seen by the proxy in front of the emulator.
        document, writes = most_writes_in_any_window(proxy.commits, 10.0)
        assert 0 < writes <= 10, f"{document} was written {writes} times within 10 s"
        # ... and the savers' own audit metric agreed.
        assert scraped and 0 < max(scraped) <= 1.0
    finally:
        done.set()
        if scraper.is_alive():
            scraper.join()
        stop_mesh(running)
        proxy.stop()
