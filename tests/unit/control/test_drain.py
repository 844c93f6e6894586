"""services.control.mesh.drain without a stop: a zero counts only from a look the ledger
took after the call began. Control's replies are scripted here: what is tested is which
reports the drain believes, given the order they arrive in."""

from __future__ import annotations

import pytest

from common.config import load_settings
from common.control import Reply, Report, State
from services.control import mesh


def ledger(looks: int, backlog: int, pid: int = 10) -> Report:
    return Report("ledger", pid, "front1", 1, {"journal_looks": looks, "backlog": backlog})


def scripted(monkeypatch: pytest.MonkeyPatch, replies: list[list[Report]]) -> list[int]:
    calls: list[int] = []

    def control(settings, name, wait=5.0, timeout=None):
        calls.append(1)
        reports = replies[min(len(calls), len(replies)) - 1]
        return Reply(True, State("accepting", 1), "", reports)

    monkeypatch.setattr(mesh, "control", control)
    monkeypatch.setattr(mesh.time, "sleep", lambda seconds: None)
    return calls


def test_a_ledger_absent_from_the_first_status_is_not_trusted_from_its_old_report(monkeypatch):
    # The first status has no ledger (its reports were late); the next one is a report
    # read before the POSTs (backlog 0), then the true ones.
    calls = scripted(
        monkeypatch,
        [[], [ledger(7, 0)], [ledger(8, 1500)], [ledger(9, 700)], [ledger(10, 0)], [ledger(11, 0)]],
    )
    assert mesh.drain(load_settings({}), None, timeout=5.0) == 0
    assert len(calls) >= 5  # not before the report with looks 10 and an empty journal


def test_the_report_right_after_the_first_is_not_enough(monkeypatch):
    calls = scripted(monkeypatch, [[ledger(7, 0)], [ledger(8, 0)], [ledger(9, 0)]])
    assert mesh.drain(load_settings({}), None, timeout=5.0) == 0
    assert len(calls) == 3
