"""The ledger's bookkeeping (window, leases, failures, dead letters), without sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.frontend.journal import Entry, Journal
from services.frontend.ledger import MAX_BACKOFF_FACTOR, Ledger


@pytest.fixture
def clock() -> list[float]:
    return [0.0]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.append([Entry(f"id{i}", "Pub", f"text {i}") for i in range(50)])
    return journal


def make_ledger(journal: Journal, clock, **options) -> Ledger:
    settings = {"window": 8, "min_window": 4, "lease_seconds": 10.0, "max_attempts": 3}
    settings.update(options)
    return Ledger(journal, now=lambda: clock[0], jitter=lambda: 0.0, **settings)


@pytest.fixture
def ledger(journal, clock) -> Ledger:
    return make_ledger(journal, clock)


def dispatch(ledger: Ledger, rows) -> list[str]:
    ledger.sent(rows)
    return [row.id for row in rows]


def test_the_window_starts_at_its_minimum_and_bounds_what_is_in_flight(ledger: Ledger):
    assert dispatch(ledger, ledger.fresh()) == ["id0", "id1", "id2", "id3"]
    assert ledger.fresh() == []
    ledger.acknowledged(["id1", "id3"])
    assert dispatch(ledger, ledger.fresh()) == ["id4", "id5"]


def test_the_window_follows_the_ack_rate_within_its_bounds(journal, clock):
    ledger = make_ledger(journal, clock, window=40, min_window=4, lease_seconds=4.0)
    for second in range(1, 6):
        clock[0] = float(second)
        ledger.acknowledged([f"other{second}-{k}" for k in range(6)])  # 6 acks per second
    # 6/s over a 2 s half-lease: 12 in flight at most.
    assert ledger.current_window() == 12
    slow = make_ledger(journal, [0.0], window=40, min_window=4, lease_seconds=0.1)
    assert slow.current_window() == 4


def test_acknowledged_rows_leave_the_journal(ledger: Ledger):
    dispatch(ledger, ledger.fresh())
    ledger.acknowledged(["id0", "id2"])
    remaining = [row.id for row in ledger.journal.after(0, 100)]
    assert "id0" not in remaining and "id2" not in remaining and len(remaining) == 48
    assert ledger.counts["acknowledged"] == 2


def test_nothing_is_resent_before_the_lease_runs_out(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    clock[0] = 9.99  # the first lease is exactly lease_seconds
    assert ledger.due() == []
    clock[0] = 10.0
    assert [r.id for r in ledger.due()] == ["id0", "id1", "id2", "id3"]


def test_each_resend_doubles_the_lease_up_to_a_cap(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    clock[0] = 10.0
    dispatch(ledger, ledger.due())
    assert ledger.counts["redelivered"] == 4
    assert ledger.in_flight["id0"] == type(ledger.in_flight["id0"])(10.0 + 20.0, 2)
    assert [r.attempts for r in ledger.journal.rows(["id0"])] == [2]
    many = make_ledger(ledger.journal, clock, max_attempts=100)
    (row,) = ledger.journal.rows(["id9"])
    many.sent([type(row)(row.seq, row.id, row.publication, row.content, 50)])
    assert many.in_flight["id9"].deadline == clock[0] + 10.0 * MAX_BACKOFF_FACTOR


def test_out_of_attempts_means_dead_letter_not_silence(ledger: Ledger, clock):
    for attempt in range(3):
        dispatch(ledger, ledger.fresh() if attempt == 0 else ledger.due())
        clock[0] += 10.0 * 2**attempt
    assert ledger.due() == []
    letters = ledger.journal.dead_letters()
    assert [d.id for d in letters] == ["id0", "id1", "id2", "id3"]
    assert letters[0].attempts == 3 and "not acknowledged after 3 attempts" in letters[0].error
    assert ledger.counts["dead_lettered"] == 4 and not ledger.in_flight
    assert "id0" not in [r.id for r in ledger.journal.after(0, 100)]


def test_a_failure_is_retried_soon_then_dead_lettered_with_its_error(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    ledger.failed("id0", "ValueError: too long")
    assert ledger.in_flight["id0"].deadline == 1.0  # retry_seconds, not the whole lease
    clock[0] = 1.0
    assert [r.id for r in ledger.due()] == ["id0"]
    dispatch(ledger, ledger.journal.rows(["id0"]))
    dispatch(ledger, ledger.journal.rows(["id0"]))  # third attempt
    ledger.failed("id0", "ValueError: too long")
    (letter,) = ledger.journal.dead_letters()
    assert (letter.id, letter.error) == ("id0", "ValueError: too long")
    assert ledger.journal.revive() == 1
    assert "id0" in [r.id for r in ledger.journal.after(0, 100)]
    assert ledger.journal.dead_letter_count() == 0


def test_a_lease_on_an_article_acked_meanwhile_is_dropped(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    ledger.journal.delete(["id0"])  # acked through an earlier dispatch
    clock[0] = 100.0
    assert "id0" not in [r.id for r in ledger.due()]
    assert "id0" not in ledger.in_flight
