"""The ledger's bookkeeping (window, leases, acks), driven without sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.frontend.journal import Entry, Journal
from services.frontend.ledger import MAX_BACKOFF_FACTOR, Ledger


@pytest.fixture
def clock() -> list[float]:
    return [0.0]


@pytest.fixture
def ledger(tmp_path: Path, clock) -> Ledger:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.append([Entry(f"id{i}", "Pub", f"text {i}") for i in range(10)])
    return Ledger(journal, window=4, lease_seconds=10.0, now=lambda: clock[0], jitter=lambda: 0.0)


def dispatch(ledger: Ledger, rows, resend=False) -> list[str]:
    for row in rows:
        ledger.sent(row, resend=resend)
    return [row.id for row in rows]


def test_window_bounds_what_is_in_flight(ledger: Ledger):
    assert dispatch(ledger, ledger.fresh()) == ["id0", "id1", "id2", "id3"]
    assert ledger.fresh() == []
    ledger.acknowledged(["id1", "id3"])
    assert dispatch(ledger, ledger.fresh()) == ["id4", "id5"]


def test_acknowledged_rows_leave_the_journal(ledger: Ledger):
    dispatch(ledger, ledger.fresh())
    ledger.acknowledged(["id0", "id2"])
    remaining = [row.id for row in ledger.journal.after(0, 100)]
    assert "id0" not in remaining and "id2" not in remaining and len(remaining) == 8


def test_nothing_is_resent_before_the_lease_runs_out(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    clock[0] = 9.99  # the first lease is exactly lease_seconds
    assert [r.id for r in ledger.expired()] == []


def test_expired_leases_are_resent_with_backoff(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    clock[0] = 10.0
    late = ledger.expired()
    assert [r.id for r in late] == ["id0", "id1", "id2", "id3"]
    ledger.journal.record_attempts([r.id for r in late])
    dispatch(ledger, ledger.journal.rows([r.id for r in late]), resend=True)
    assert ledger.redelivered == 4
    # attempts 2 now: the next lease is lease * 2**2
    assert ledger.in_flight["id0"].deadline == 10.0 + 10.0 * 4
    clock[0] = 10.0 + 10.0 * 4 - 0.1
    assert ledger.expired() == []


def test_backoff_is_capped(ledger: Ledger):
    row = ledger.fresh()[0]
    ledger.sent(row.__class__(row.seq, row.id, row.publication, row.content, 50), resend=True)
    assert ledger.in_flight[row.id].deadline == 10.0 * MAX_BACKOFF_FACTOR


def test_a_lease_on_an_article_acked_meanwhile_is_dropped(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    ledger.journal.delete(["id0"])  # acked through an earlier dispatch
    clock[0] = 100.0
    assert "id0" not in [r.id for r in ledger.expired()]
    assert "id0" not in ledger.in_flight
