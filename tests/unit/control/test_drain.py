"""services.control.mesh.drain without a stop: a zero counts only from a look the ledger
took after the call began, known by the look request it had heard (State.look), never by
clocks or by counting reports. Control's replies are scripted here: what is tested is which
reports the drain believes, given the order they arrive in. (The real control server, the
ledger and a drain racing real POSTs: tests/e2e/test_exact_drain.py.)"""

from __future__ import annotations

import pytest

from common.config import load_settings
from common.control import Reply, Report, State
from services.control import mesh

BOOT = 77


def ledger(look: int, backlog: int, boot: int = BOOT, pid: int = 10) -> Report:
    counters = {"look_boot": boot, "look": look, "backlog": backlog}
    return Report("ledger", pid, "front1", 1, counters)


def scripted(
    monkeypatch: pytest.MonkeyPatch, statuses: list[list[Report]], boots: list[int] | None = None
) -> list[str]:
    """Control answering "look" with the next look number and "status" with the next
    scripted reports (the last one repeated); `boots`: control's boot at each status."""
    calls: list[str] = []
    looks = 0
    boots = boots or [BOOT]

    def control(settings, name, wait=5.0, timeout=None):
        nonlocal looks
        calls.append(name)
        seen = calls.count("status")
        boot = boots[min(max(seen, 1), len(boots)) - 1]
        if name == "look":
            looks += 1
            return Reply(True, State("accepting", 1, look=looks, boot=boot))
        reports = statuses[min(seen, len(statuses)) - 1]
        return Reply(True, State("accepting", 1, look=looks, boot=boot), "", reports)

    monkeypatch.setattr(mesh, "control", control)
    monkeypatch.setattr(mesh.time, "sleep", lambda seconds: None)
    return calls


def test_an_empty_journal_counts_only_from_a_look_after_the_request(monkeypatch):
    # Reports read before the request (look 0) say empty: the POSTs were not seen yet.
    # Any number of them is not enough; the first look after the request (look 1) is.
    calls = scripted(
        monkeypatch,
        [[ledger(0, 0)], [ledger(0, 0)], [ledger(0, 0)], [ledger(1, 900)], [ledger(1, 0)]],
    )
    assert mesh.drain(load_settings({}), None, timeout=5.0) == 0
    assert calls[0] == "look"
    assert calls.count("status") == 5


def test_a_ledger_absent_from_the_first_status_is_not_trusted_from_its_old_report(monkeypatch):
    calls = scripted(monkeypatch, [[], [ledger(0, 0)], [ledger(1, 1500)], [ledger(1, 0)]])
    assert mesh.drain(load_settings({}), None, timeout=5.0) == 0
    assert calls.count("status") == 4


def test_every_ledger_must_have_looked_after_the_request(monkeypatch):
    both_empty_one_stale = [ledger(1, 0, pid=10), ledger(0, 0, pid=11)]
    both_looked = [ledger(1, 0, pid=10), ledger(1, 0, pid=11)]
    calls = scripted(monkeypatch, [both_empty_one_stale, both_empty_one_stale, both_looked])
    assert mesh.drain(load_settings({}), None, timeout=5.0) == 0
    assert calls.count("status") == 3


def test_a_look_heard_from_another_control_start_is_not_taken(monkeypatch):
    # Control restarted after the request (boot 78): a look numbered 1 of the old boot is
    # not this one's, so the drain asks the new control for a look and waits for it.
    calls = scripted(
        monkeypatch,
        [[ledger(1, 0, boot=BOOT - 1)], [ledger(1, 0, boot=BOOT)], [ledger(2, 0, boot=78)]],
        boots=[BOOT, 78, 78],
    )
    assert mesh.drain(load_settings({}), None, timeout=5.0) == 0
    assert calls.count("look") == 2
    assert calls.count("status") == 3


def test_never_settled_is_never_drained(monkeypatch):
    scripted(monkeypatch, [[ledger(0, 0)]])
    assert mesh.drain(load_settings({}), None, timeout=0.05) == 1
