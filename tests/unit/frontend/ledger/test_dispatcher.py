"""The ledger's bookkeeping (window, queue-aware leases, failures, dead letters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.frontend.journal import Entry, Journal
from services.frontend.ledger.dispatcher import MAX_BACKOFF_FACTOR, Ledger

LEASE = 10.0


@pytest.fixture
def clock() -> list[float]:
    return [0.0]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.append([Entry(f"id{i}", "Pub", f"text {i}") for i in range(50)])
    return journal


def make_ledger(journal: Journal, clock, **options) -> Ledger:
    settings = {"window": 4, "lease_seconds": LEASE, "max_attempts": 3}
    settings.update(options)
    return Ledger(journal, now=lambda: clock[0], jitter=lambda: 0.0, **settings)


@pytest.fixture
def ledger(journal, clock) -> Ledger:
    return make_ledger(journal, clock)


def dispatch(ledger: Ledger, rows) -> list[str]:
    ledger.sent(rows)
    return [row.id for row in rows]


def ids(rows) -> list[str]:
    return [row.id for row in rows]


def test_the_window_bounds_what_is_in_flight(ledger: Ledger):
    assert dispatch(ledger, ledger.fresh()) == ["id0", "id1", "id2", "id3"]
    assert ledger.fresh() == []
    ledger.acknowledged(["id1", "id3"])
    assert dispatch(ledger, ledger.fresh()) == ["id4", "id5"]


def test_acknowledged_rows_leave_the_journal(ledger: Ledger):
    dispatch(ledger, ledger.fresh())
    ledger.acknowledged(["id0", "id2"])
    remaining = ids(ledger.journal.after(0, 100))
    assert "id0" not in remaining and "id2" not in remaining and len(remaining) == 48
    assert ledger.counts["acknowledged"] == 2


def test_a_slow_queue_is_not_mistaken_for_loss(ledger: Ledger, clock):
    # Four in flight, acknowledged one every 8 s: far slower than the 10 s lease would
    # allow if it counted from dispatch. Each one's clock starts when the one ahead is done.
    dispatch(ledger, ledger.fresh())
    for n in range(4):
        clock[0] += 8.0
        assert ledger.due() == []
        ledger.acknowledged([f"id{n}"])
    assert ledger.counts["redelivered"] == 0


def test_the_head_of_the_queue_is_resent_one_lease_after_its_turn(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    clock[0] = 5.0
    ledger.acknowledged(["id1"])  # the pipeline moves, but id0 is not acknowledged
    clock[0] = LEASE - 0.01
    assert ledger.due() == []
    clock[0] = LEASE
    # Only the head's clock started at dispatch; id2 and id3 still wait behind id0.
    assert ids(ledger.due()) == ["id0"]


def test_an_article_lost_behind_others_comes_back_after_they_are_done(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())  # id0..id3; id1 is lost
    clock[0] = 2.0
    ledger.acknowledged(["id0", "id2", "id3"])
    dispatch(ledger, ledger.fresh())  # more work keeps flowing: id4..id6
    clock[0] = 3.0
    ledger.due()  # id1's clock starts now: everything ahead of it is done
    clock[0] = 3.0 + LEASE - 0.01
    ledger.acknowledged(["id4"])
    assert "id1" not in ids(ledger.due())
    clock[0] = 3.0 + LEASE
    assert "id1" in ids(ledger.due())


def test_a_stalled_pipeline_resends_what_it_holds(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    clock[0] = 1.0
    ledger.acknowledged(["id0"])
    clock[0] = 1.0 + 2 * LEASE - 0.01
    assert ledger.due() == []
    clock[0] = 1.0 + 2 * LEASE  # no ack at all for two leases: what is ahead is lost too
    assert ids(ledger.due()) == ["id1", "id2", "id3"]


def test_each_resend_doubles_the_lease_up_to_a_cap(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    clock[0] = 2 * LEASE
    dispatch(ledger, ledger.due())
    assert ledger.counts["redelivered"] == 4
    assert ledger.in_flight["id0"].length == 2 * LEASE
    assert [r.attempts for r in ledger.journal.rows(["id0"])] == [2]
    many = make_ledger(ledger.journal, clock, max_attempts=100)
    (row,) = ledger.journal.rows(["id9"])
    many.sent([type(row)(row.seq, row.id, row.publication, row.content, 50)])
    assert many.in_flight["id9"].length == LEASE * MAX_BACKOFF_FACTOR


def test_out_of_attempts_means_dead_letter_not_silence(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    for attempt in range(1, 3):
        clock[0] += 2 * LEASE * 2 ** (attempt - 1)  # stalled: nothing is ever acknowledged
        dispatch(ledger, ledger.due())
    clock[0] += 2 * LEASE * 4
    assert ledger.due() == []
    letters = ledger.journal.dead_letters()
    assert [d.id for d in letters] == ["id0", "id1", "id2", "id3"]
    assert letters[0].attempts == 3 and "not acknowledged after 3 attempts" in letters[0].error
    assert ledger.counts["dead_lettered"] == 4 and not ledger.in_flight
    assert "id0" not in ids(ledger.journal.after(0, 100))


def test_a_failure_is_retried_soon_then_dead_lettered_with_its_error(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    ledger.failed("id1", "ValueError: too long")
    clock[0] = 1.0  # retry_seconds, not a lease, and not behind the queue
    assert ids(ledger.due()) == ["id1"]
    dispatch(ledger, ledger.journal.rows(["id1"]))
    dispatch(ledger, ledger.journal.rows(["id1"]))  # third attempt
    ledger.failed("id1", "ValueError: too long")
    (letter,) = ledger.journal.dead_letters()
    assert (letter.id, letter.error) == ("id1", "ValueError: too long")
    assert ledger.journal.revive() == 1
    assert "id1" in ids(ledger.journal.after(0, 100))
    assert ledger.journal.dead_letter_count() == 0


def test_a_lease_on_an_article_acked_meanwhile_is_dropped(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    ledger.journal.delete(["id0"])  # acked through an earlier dispatch
    clock[0] = 100.0
    assert "id0" not in ids(ledger.due())
    assert "id0" not in ledger.in_flight
