"""The mesh across namespace hosts: nothing accepted is lost or counted twice, whatever
happens to one host or one link, and the fleet starts, scales, drains and stops as one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import httpx

from common.control import summarize
from services.control import mesh
from store import open_store
from tests.e2e.load import RetryingLoad
from tests.e2e.multihost.conftest import API_KEY, FRONTS, Fleet

ACCEPTED: dict[str, dict] = {}  # every article the fleet accepted, across the scenarios


def articles(corpus: list[str], tag: str, count: int, start: int = 0) -> list[dict]:
    """Unique ids per scenario: the same text in two scenarios is two articles."""
    return [
        {
            "publication": f"{tag} {i % 2}",
            "content": corpus[(start + i) % len(corpus)],
            "id": f"{tag}-{i}",
        }
        for i in range(count)
    ]


def load(fleet: Fleet, front: str, batch: list[dict], interval: float = 0.1) -> RetryingLoad:
    return RetryingLoad(fleet.url(front), API_KEY, batch, batch=10, interval=interval).start()


def finish(fleet: Fleet, loads: list[RetryingLoad], oracle, timeout: float = 120) -> None:
    for running in loads:
        running.join(timeout=timeout)
        assert running.server_errors == []
        ACCEPTED.update(running.accepted)
    fleet.wait_drained(timeout=timeout)
    fleet.assert_exactly_counted(ACCEPTED, oracle)


def test_undisturbed_run_through_both_frontends(fleet: Fleet, corpus, oracle):
    loads = [
        load(fleet, front, articles(corpus, f"calm-{front}", 60, start=60 * n), interval=0)
        for n, front in enumerate(FRONTS)
    ]
    started = time.monotonic()
    finish(fleet, loads, oracle)
    assert len(ACCEPTED) == 120
    print(f"undisturbed: 120 articles in {time.monotonic() - started:.1f}s")
    # Each extractor host took work from the ledgers (one PULL connected to both), and
    # each ledger had its articles acknowledged by the savers across hosts.
    reports = mesh.control(fleet.tester(), "status").reports
    extracted = {r.host: r.counters.get("extracted", 0) for r in reports if r.stage == "extractor"}
    assert extracted.keys() == {"work1", "work2"} and all(extracted.values()), extracted
    acked = {r.host: r.counters.get("acknowledged", 0) for r in reports if r.stage == "ledger"}
    assert acked == {"front1": 60, "front2": 60}, acked


def wait_for(what: str, check, timeout: float = 30.0, every: float = 0.3):
    """Poll `check` until it returns something true (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def fleet_status(fleet: Fleet):
    return summarize(mesh.control(fleet.tester(), "status"))


def test_status_shows_every_host(fleet: Fleet):
    summary = wait_for(
        "every host reporting",
        lambda: (s := fleet_status(fleet)).hosts.keys() >= {*FRONTS, "work1", "work2"} and s,
    )
    assert summary.hosts["front1"] == {"frontend": 1, "ledger": 1}
    assert summary.hosts["work2"] == {"extractor": 1}
    assert summary.hosts["store1"]["saver"] == 1
    assert set(summary.ledger_backlogs) == set(FRONTS)
    # GET /status on either frontend, and `ingest status` on a host without one.
    body = httpx.get(fleet.url("front2") + "/status", timeout=10).json()
    assert body["hosts"]["work1"] == {"extractor": 1}
    assert set(body["ledger_backlogs"]) == set(FRONTS)
    shown = fleet.ingest("work1", "status")
    assert shown.returncode == 0, shown.stderr
    assert "front2       frontend 1, ledger 1" in shown.stdout
    assert "backlog per ledger:" in shown.stdout


def test_stop_writes_and_resume_reach_every_frontend(fleet: Fleet, corpus):
    stopped = fleet.ingest("work2", "stop-writes")
    assert stopped.returncode == 0, stopped.stderr
    one = articles(corpus, "gate", 1)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for front in FRONTS:
        answer = httpx.post(fleet.url(front) + "/articles", json=one, headers=headers)
        assert answer.status_code == 503, (front, answer.text)
    resumed = fleet.ingest("store1", "resume")
    assert resumed.returncode == 0, resumed.stderr
    for front in FRONTS:
        answer = httpx.post(fleet.url(front) + "/articles", json=one, headers=headers)
        assert answer.status_code == 202, (front, answer.text)
        ACCEPTED.update(dict(zip(answer.json()["ids"], one, strict=True)))


def test_sigkill_of_a_whole_host_mid_load_then_restart(fleet: Fleet, corpus, oracle):
    """front2 (frontend + ledger + its journal) dies at once, circusd included, while both
    frontends take articles; its clients retry; restarted, it loses and doubles nothing."""
    loads = [
        load(fleet, front, articles(corpus, f"kill-{front}", 80, start=40 * n), interval=0.05)
        for n, front in enumerate(FRONTS)
    ]
    wait_for("front2 holding work", lambda: fleet.backlogs()["front2"] >= 20, timeout=30)
    killed = fleet.kill("front2")
    assert killed >= 3  # circusd, the gunicorn master and worker, the ledger
    assert fleet.pids("front2") == []
    time.sleep(3)
    fleet.up("front2")
    finish(fleet, loads, oracle)


def test_a_worker_host_cut_off_for_15_seconds(fleet: Fleet, corpus, oracle):
    """work1's link goes down mid-load: what it held comes back by lease, the rest flows
    through work2, and work1 rejoins when the link is back."""
    loads = [
        load(fleet, front, articles(corpus, f"cut-{front}", 60, start=30 * n), interval=0.2)
        for n, front in enumerate(FRONTS)
    ]
    time.sleep(2)
    cut = time.monotonic()
    fleet.link("work1", up=False)
    try:
        # The cut is real: work1's reports stop reaching control (live = heard within 3 s).
        wait_for("work1 unheard", lambda: "work1" not in fleet_status(fleet).hosts, timeout=12)
        time.sleep(max(0.0, 15 - (time.monotonic() - cut)))
    finally:
        fleet.link("work1", up=True)
    finish(fleet, loads, oracle)
    wait_for(
        "work1 reporting again",
        lambda: fleet_status(fleet).hosts.get("work1", {}).get("extractor") == 1,
    )


def test_scale_extractors_on_one_host_under_load(fleet: Fleet, corpus, oracle):
    loads = [
        load(fleet, front, articles(corpus, f"scale-{front}", 60, start=50 * n), interval=0.1)
        for n, front in enumerate(FRONTS)
    ]
    time.sleep(1)
    scaled = fleet.ingest("work2", "scale", "extractor", "2")
    assert scaled.returncode == 0, scaled.stderr
    assert "extractor: 1 -> 2" in scaled.stdout
    finish(fleet, loads, oracle)
    wait_for(
        "two extractors on work2",
        lambda: fleet_status(fleet).hosts["work2"].get("extractor") == 2,
    )


def test_a_host_with_an_unknown_key_is_refused(fleet: Fleet):
    """A rogue namespace host with its own key pair, never authorized, knowing every
    endpoint and the server's public key: every handshake is refused, it gets no article,
    no answer, and nothing it sends is counted."""
    keys = fleet.root / "rogue" / "keys"
    fleet.ingest_here("keys", "--name", "rogue", env={"INGEST_KEY_DIR": str(keys)})
    shutil.copy2(fleet.root / "keys" / "server.key", keys / "server.key")  # the real one
    fleet.add_namespace("rogue", f"{fleet.prefix}.41")
    settings = fleet.settings("work1")
    out = subprocess.run(
        [
            *("ip", "netns", "exec", f"im{fleet.token}-rogue", sys.executable),
            *("-m", "tests.e2e.multihost.rogue", str(keys)),
            settings.ledger_dispatch_endpoints()["front1"],
            settings.results_in_endpoint,
            settings.control_command_endpoint,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=mesh.ROOT,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["articles"] == 0
    assert not seen["control_answered"]
    assert not seen["sent_forged"]
    for link, events in seen["events"].items():
        assert "HANDSHAKE_FAILED_AUTH" in events, (link, events)
        assert "HANDSHAKE_SUCCEEDED" not in events, (link, events)
    store = open_store(fleet.tester())
    try:
        assert "Forged News" not in {p.name for p in store.publications(limit=10_000)}
        assert store.counted(["rogue-1"]) == set()
    finally:
        store.close()
    assert "rogue" not in fleet_status(fleet).hosts


def test_drain_and_down_across_every_host(fleet: Fleet, corpus, oracle):
    """`ingest drain` then `ingest down`, run on one host, act on the whole fleet: drained
    means every journal empty, and down answers once every host's circusd is gone."""
    loads = [
        load(fleet, front, articles(corpus, f"down-{front}", 40, start=20 * n), interval=0.05)
        for n, front in enumerate(FRONTS)
    ]
    for running in loads:
        running.join(timeout=60)
        ACCEPTED.update(running.accepted)
    drained = fleet.ingest("work1", "drain", "--timeout", "120")
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert fleet.backlogs() == {front: 0 for front in FRONTS}
    fleet.assert_exactly_counted(ACCEPTED, oracle)
    down = fleet.ingest("front1", "down", "--timeout", "60")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped: " in down.stdout
    for name in ("front1", "front2", "work1", "work2", "store1"):
        wait_for(f"{name} has no process left", lambda n=name: fleet.pids(n) == [], timeout=30)
