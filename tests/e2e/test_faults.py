"""Fault injection on the real mesh: nothing accepted is lost, nothing is counted twice."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time

import psutil

from services.control import mesh
from tests.e2e.conftest import (
    assert_exactly_counted,
    ingest,
    mesh_pids,
    start_firestore_mesh,
    start_mesh,
    stop_mesh,
)
from tests.e2e.load import RetryingLoad

# Short leases, so what a dead process held comes back within seconds.
FAULT_SETTINGS = {"lease_seconds": 5.0, "max_attempts": 20}
RSS_BOUND_MB = 800


def unique_articles(corpus: list[str], count: int, tag: str) -> list[dict]:
    return [
        {"publication": f"{tag} {i % 3}", "content": corpus[i % len(corpus)], "id": f"{tag}-{i}"}
        for i in range(count)
    ]


def start_load(running, corpus: list[str], count: int, tag: str, interval: float) -> RetryingLoad:
    articles = unique_articles(corpus, count, tag)
    return RetryingLoad(running.url, running.key, articles, interval=interval).start()


def finish_and_check(running, load: RetryingLoad, oracle) -> None:
    """The load ends with no 5xx but 503, the mesh drains, and every accepted article is
    counted exactly once (markers and spaCy's own counts)."""
    load.join(timeout=300)
    assert load.server_errors == []
    running.wait_drained(timeout=400)
    assert_exactly_counted(running, load.accepted, oracle)


def acks_while_waiting(running, seconds: float) -> float:
    before = ledger_counters(running)["acknowledged"]
    time.sleep(seconds)
    return ledger_counters(running)["acknowledged"] - before


def ledger_counters(running) -> dict[str, float]:
    reply = mesh.control(running.settings, "status")
    (ledger,) = [r for r in reply.reports if r.stage == "ledger"]
    return ledger.counters


def kill_one(running, stage: str, rng: random.Random) -> int:
    pids = mesh.circus(running.settings, "list", name=stage)["pids"]
    if stage == "frontend":  # a gunicorn worker, not the master holding the socket
        pids = [child.pid for pid in pids for child in psutil.Process(pid).children()]
    victim = rng.choice(pids)
    psutil.Process(victim).send_signal(signal.SIGKILL)
    return victim


def test_chaos_sigkill_every_stage_under_load(tmp_path, corpus, oracle):
    rng = random.Random(7)
    running = start_mesh(tmp_path, **FAULT_SETTINGS)
    try:
        load = start_load(running, corpus, 1500, "chaos", interval=0.08)
        stages = ["frontend", "extractor", "saver", "ledger", "saver-inlet", "control"]
        killed: list[str] = []
        while load.running or len(killed) < 2 * len(stages):
            # Every stage at least once, then at random, about every 2 s.
            order = stages if len(killed) < len(stages) else [rng.choice(stages)]
            for stage in rng.sample(order, len(order)):
                time.sleep(2)
                kill_one(running, stage, rng)
                killed.append(stage)
        finish_and_check(running, load, oracle)
        assert set(killed) == set(stages)
        assert len(load.accepted) == 1500
    finally:
        stop_mesh(running)


def test_scaling_down_and_up_under_load_loses_nothing(tmp_path, corpus, oracle):
    running = start_mesh(tmp_path, **FAULT_SETTINGS)
    try:
        load = start_load(running, corpus, 900, "scale", interval=0.1)
        steps = [("extractor", 3), ("saver", 2), ("extractor", 1), ("saver", 1), ("extractor", 2)]
        for stage, count in steps * 2:
            time.sleep(2)
            result = ingest(running, "scale", stage, str(count))
            assert result.returncode == 0, result.stderr
        finish_and_check(running, load, oracle)
    finally:
        stop_mesh(running)


def test_an_extractor_scaled_down_mid_burst_gives_back_what_it_asked_for_ahead(
    tmp_path, corpus, oracle
):
    """A stopping extractor hands the ledger the chunk it asked for ahead, and the ledger
    sends it out again at once: with leases of two minutes the burst still drains in well
    under one (a chunk left to its lease would come back only after it)."""
    # No text cache: the corpus repeats its texts, and every article must take its NER time.
    running = start_mesh(tmp_path, lease_seconds=120.0, text_cache_entries=0)
    try:
        articles = unique_articles(corpus, 1200, "given")
        for start in range(0, len(articles), 100):
            assert running.post(articles[start : start + 100]).status_code == 202
        deadline = time.monotonic() + 120
        while ledger_counters(running)["acknowledged"] < 100:  # both extractors at work
            assert time.monotonic() < deadline, "nothing acknowledged in 120 s"
            time.sleep(0.2)
        assert ingest(running, "scale", "extractor", "1").returncode == 0
        running.wait_drained(timeout=90)
        assert ledger_counters(running)["redelivered"] > 0  # the chunk given back went again
        assert_exactly_counted(running, {a["id"]: a for a in articles}, oracle)
    finally:
        stop_mesh(running)


def test_sqlite_store_locked_for_15s_mid_load(tmp_path, corpus, oracle):
    running = start_mesh(tmp_path, **FAULT_SETTINGS)
    try:
        load = start_load(running, corpus, 600, "lock", interval=0.1)
        time.sleep(4)
        # Another connection holds the store's write lock: savers block, retry, ack nothing.
        blocker = sqlite3.connect(running.settings.sqlite_store_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        acked_during = acks_while_waiting(running, 15)
        blocker.execute("ROLLBACK")
        blocker.close()
        assert acked_during <= running.settings.flush_max_articles  # at most a commit in flight
        finish_and_check(running, load, oracle)
    finally:
        stop_mesh(running)


def test_firestore_frozen_for_15s_mid_load(firestore_emulator, tmp_path, corpus, oracle):
    # SIGSTOP keeps the emulator's data but answers nothing: clients see deadlines expire.
    running = start_firestore_mesh(firestore_emulator, tmp_path, **FAULT_SETTINGS)
    try:
        load = start_load(running, corpus, 600, "freeze", interval=0.1)
        time.sleep(4)
        group = os.getpgid(firestore_emulator.process.pid)
        os.killpg(group, signal.SIGSTOP)
        try:
            acked_during = acks_while_waiting(running, 15)
        finally:
            os.killpg(group, signal.SIGCONT)
        assert acked_during <= running.settings.flush_max_articles  # at most a commit in flight
        finish_and_check(running, load, oracle)
    finally:
        stop_mesh(running)


def test_burst_is_bounded_and_an_undisturbed_backlog_resends_nothing(tmp_path, corpus, oracle):
    # 20,000 articles offered as fast as possible against a journal bound of 3,000 and a
    # 10 s lease: 503s past the bound, flat memory, and a backlog that takes a minute to
    # drain (far longer than the lease) without a single re-send. (The lease must exceed
    # about two extractor batches, which take ~4 s each while the burst loads both cores.)
    running = start_mesh(tmp_path, lease_seconds=10.0, max_backlog=3000)
    try:
        offered = unique_articles(corpus, 20_000, "burst")
        statuses: list[int] = []
        accepted: dict[str, dict] = {}
        peak_rss: dict[int, float] = {}

        def offer(part: list[dict]) -> None:
            import httpx

            with httpx.Client(base_url=running.url, timeout=30) as client:
                for i in range(0, len(part), 200):
                    batch = part[i : i + 200]
                    answer = client.post(
                        "/articles", json=batch, headers={"Authorization": f"Bearer {running.key}"}
                    )
                    statuses.append(answer.status_code)
                    if answer.status_code == 202:
                        accepted.update(zip(answer.json()["ids"], batch, strict=True))

        threads = [threading.Thread(target=offer, args=(offered[n::4],)) for n in range(4)]
        for thread in threads:
            thread.start()
        pids = mesh_pids(running)
        while any(t.is_alive() for t in threads) or running.backlog():
            for pid in pids:
                try:
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                peak_rss[pid] = max(peak_rss.get(pid, 0.0), rss)
            time.sleep(0.5)
        assert set(statuses) <= {202, 503}
        assert 503 in statuses and 202 in statuses
        assert 3000 <= len(accepted) < 20_000
        assert max(peak_rss.values()) < RSS_BOUND_MB, peak_rss
        assert ledger_counters(running)["redelivered"] == 0
        assert_exactly_counted(running, accepted, oracle)
    finally:
        stop_mesh(running)


def test_an_article_that_breaks_extraction_becomes_a_dead_letter(tmp_path, corpus, oracle):
    """An article spaCy refuses is dead-lettered at its first failure, its batch is counted.

    No real input makes spaCy raise any more now that long articles are split (tried: the
    whole body limit of text, NULs, 20,000-character tokens, runs of emoji, quotes or
    brackets): so the mesh runs with `max_piece_chars` above spaCy's max_length, which the
    configuration allows (the extractor warns), and the article over 1,000,000 characters
    reaches spaCy's tokenizer whole, which refuses it for real (E088). Nothing is injected:
    the product's own code raises, falls back to one by one, and reports a deterministic
    failure, which the ledger sets aside at once rather than after max_attempts."""
    running = start_mesh(tmp_path, max_attempts=3, max_piece_chars=2_000_000)
    try:
        good = unique_articles(corpus, 30, "dl")
        # Over spaCy's nlp.max_length (1,000,000 characters), in one piece: refused.
        poison = {"publication": "dl 0", "content": "word " * 200_001, "id": "poison"}
        answer = running.post([*good[:15], poison, *good[15:]])
        assert answer.status_code == 202
        running.wait_drained(timeout=120)
        assert_exactly_counted(running, {a["id"]: a for a in good}, oracle)
        letters = ingest(running, "dead-letters")
        assert "poison" in letters.stdout and "E088" in letters.stdout
        # One dispatch of the three allowed: the same text would fail the same way again.
        assert "attempts=1" in letters.stdout
        # status reads the ledger's last report, refreshed every second.
        deadline = time.monotonic() + 10
        while "dead letters: 1" not in ingest(running, "status").stdout:
            assert time.monotonic() < deadline, "status never showed the dead letter"
            time.sleep(0.5)
        retried = ingest(running, "retry-dead")
        assert "1 dead letter(s) back" in retried.stdout
        running.wait_drained(timeout=60)
        assert "1 dead letter(s)" in ingest(running, "dead-letters").stdout
    finally:
        stop_mesh(running)
