"""The control plane's view of a fleet: per-host status, per-host process plans, and the
bookkeeping of `down` across hosts (the whole path runs in tests/e2e/multihost/)."""

from __future__ import annotations

from pathlib import Path

from common.config import load_settings
from common.control import Halt, Reply, Report, State, summarize
from services.control import mesh
from services.control.__main__ import Halting


def report(stage: str, host: str, pid: int, **counters: float) -> Report:
    return Report(stage, pid, host, 1, counters)


def test_status_counts_processes_per_host_and_backlog_per_ledger():
    reply = Reply(
        True,
        State("accepting", 1),
        reports=[
            report("frontend", "front1", 1),
            report("frontend", "front1", 2),
            report("ledger", "front1", 3, backlog=7),
            report("ledger", "front2", 4, backlog=5),
            report("extractor", "work1", 5),
        ],
    )
    summary = summarize(reply)
    assert summary.hosts == {
        "front1": {"frontend": 2, "ledger": 1},
        "front2": {"ledger": 1},
        "work1": {"extractor": 1},
    }
    assert summary.ledger_backlogs == {"front1": 7, "front2": 5}
    assert summary.backlog == 12


def test_a_host_runs_only_its_stages(tmp_path: Path):
    settings = load_settings({}, data_dir=str(tmp_path), stages=["extractor"], extractors=3)
    assert mesh.process_plan(settings) == {
        "control": 0,
        "frontend": 0,
        "ledger": 0,
        "extractor": 3,
        "saver-inlet": 0,
        "saver": 0,
    }
    env = mesh.environ(settings)
    assert env["MESH_EXTRACTOR_PROCESSES"] == "3"
    assert env["MESH_SAVER_INLET_PROCESSES"] == "0"
    # No stages: the single-host mesh, every stage as before.
    everything = mesh.process_plan(load_settings({}, data_dir=str(tmp_path)))
    assert everything["control"] == everything["saver-inlet"] == 1
    assert everything["frontend"] == 2


def test_down_waits_for_each_host_to_confirm_and_fall_silent():
    halting = Halting(b"id", Halt(4, spare="store1"), {"front1", "work1"}, deadline=0.0)
    live = [report("ledger", "front1", 1), report("extractor", "work1", 2)]
    assert halting.missing(live) == ["front1", "work1"]
    halting.confirmed.add("front1")
    assert halting.missing(live) == ["front1", "work1"]  # confirmed, still running
    assert halting.missing(live[1:]) == ["work1"]  # front1 gone
    # work1 fell silent without confirming (a cut link): not taken as stopped.
    assert halting.missing([]) == ["work1"]
    halting.confirmed.add("work1")
    assert halting.missing([]) == []


def test_http_binds_its_host_when_an_address_else_the_bind_address():
    from common.config import load_settings
    from services.control.mesh import http_bind_host

    # A pod: 0.0.0.0, so probes, the Service and `kubectl port-forward` (loopback) all reach it.
    pod = load_settings({}, http_host="0.0.0.0", bind_address="10.8.0.7")
    assert http_bind_host(pod) == "0.0.0.0"
    # A namespace host of a topology: its own address.
    assert http_bind_host(load_settings({}, http_host="10.77.0.11")) == "10.77.0.11"
    # A DNS name cannot be bound: the bind address (the pod IP) instead.
    named = load_settings({}, http_host="frontend-0.frontend", bind_address="10.8.0.7")
    assert http_bind_host(named) == "10.8.0.7"
    assert http_bind_host(load_settings({})) == "127.0.0.1"
