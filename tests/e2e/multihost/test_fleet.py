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
from tests.e2e.multihost.conftest import API_KEY, DIRECT, FRONTS, Fleet

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


def load(
    fleet: Fleet, front: str, rows: list[dict], batch: int = 10, interval: float = 0.1
) -> RetryingLoad:
    return RetryingLoad(fleet.url(front), API_KEY, rows, batch=batch, interval=interval).start()


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


def per_host(fleet: Fleet, stage: str, counter: str) -> dict[str, float]:
    """A counter of one stage, summed per host, as control last heard it."""
    totals: dict[str, float] = {}
    for report in mesh.control(fleet.tester(), "status").reports:
        if report.stage == stage:
            totals[report.host] = totals.get(report.host, 0) + report.counters.get(counter, 0)
    return totals


def test_a_link_down_between_a_worker_and_a_ledger_host(fleet: Fleet, corpus, oracle):
    """The direct link between work1 and front1 goes down for 15 s mid-load (`ip link set
    ... down`, both ends): work1 loses front1, and only front1. It keeps taking front2's
    articles and reporting to control on store1; front1's articles go to work2; what work1
    held of front1's comes back by lease; afterwards work1 takes front1's articles again,
    and every accepted article is counted once."""
    worker, ledger = DIRECT
    end = fleet.direct[frozenset(DIRECT)].ends[worker]
    http = fleet.topology.ports.http
    # By the kernel's routes, work1 reaches front1 over the direct link, the rest over the
    # bridge (and front1 answers work1 the same way).
    assert fleet.route_device(worker, fleet.addresses[ledger]) == end
    assert fleet.route_device(ledger, fleet.addresses[worker]).startswith("to-")
    for other in ("front2", "store1", "work2"):
        assert fleet.route_device(worker, fleet.addresses[other]) == "eth0", other
    received = fleet.received_bytes(worker, end)
    acked = per_host(fleet, "ledger", "acknowledged")
    # ~25 s of load (30 POSTs of 4 per frontend): it spans the whole cut.
    loads = [
        load(fleet, front, articles(corpus, f"link-{front}", 120, start=30 * n), 4, 0.8)
        for n, front in enumerate(FRONTS)
    ]
    wait_for(
        "front1's articles acknowledged",
        lambda: per_host(fleet, "ledger", "acknowledged").get(ledger, 0) >= acked[ledger] + 10,
    )
    # front1's articles reach work1 over the direct link: ~1.2 kB each, where the
    # heartbeats alone are ~150 B/s.
    assert fleet.received_bytes(worker, end) - received > 3_000

    cut = time.monotonic()
    fleet.cut(worker, ledger, down=True)
    try:
        # ZeroMQ's heartbeats drop the dead connections within ~3 s; what work1 had taken
        # from front1 before the cut is extracted (and saved) by then.
        time.sleep(4)
        assert not fleet.reaches(worker, ledger, http), "work1 still reaches front1"
        assert fleet.reaches(worker, "front2", http)
        assert fleet.reaches("work2", ledger, http)
        before = (
            per_host(fleet, "extractor", "extracted"),
            per_host(fleet, "ledger", "acknowledged"),
        )
        received = fleet.received_bytes(worker, end)
        while time.monotonic() - cut < 14.5:
            # work1 reports to control on store1 all along (live = heard within 3 s).
            assert worker in fleet_status(fleet).hosts, "work1 unheard during the cut"
            time.sleep(1)
        after = (
            per_host(fleet, "extractor", "extracted"),
            per_host(fleet, "ledger", "acknowledged"),
        )
        # work1 reaches front2 only: what it extracted meanwhile is front2's; front1's
        # articles were taken by work2 (the one worker host that reaches front1).
        assert after[0][worker] > before[0][worker], (before, after)
        assert after[1]["front2"] > before[1]["front2"], (before, after)
        assert after[1][ledger] > before[1][ledger], (before, after)
        assert fleet.received_bytes(worker, end) == received  # the link is really down
        print(
            f"link down: work1 extracted {after[0][worker] - before[0][worker]:.0f} of "
            f"front2's, front1 had {after[1][ledger] - before[1][ledger]:.0f} acknowledged"
        )
    finally:
        fleet.cut(worker, ledger, down=False)
    finish(fleet, loads, oracle)
    # work1 takes front1's articles over the direct link again.
    assert fleet.route_device(worker, fleet.addresses[ledger]) == end
    received = fleet.received_bytes(worker, end)
    rejoin: list[RetryingLoad] = []

    def rejoined() -> bool:
        rows = articles(corpus, f"rejoin-{len(rejoin)}", 4, start=7 * len(rejoin))
        rejoin.append(load(fleet, ledger, rows, 4, 0))
        rejoin[-1].join(timeout=30)
        time.sleep(0.5)
        return fleet.received_bytes(worker, end) - received > 3_000

    wait_for("work1 taking front1's articles again", rejoined, every=0)
    finish(fleet, rejoin, oracle)


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
