"""The ledger's bookkeeping (window, queue-aware leases, failures, dead letters)."""

from __future__ import annotations

from pathlib import Path

import msgspec
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
    journal.set_gate("accepting", 1)
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


def token_of(ledger: Ledger, ident: str) -> int:
    """A token the ledger issued for the article, as a saver's ack would carry it."""
    lease = ledger.in_flight.get(ident)
    tokens = lease.tokens if lease else ledger._buried_tokens.get(ident, {0})
    return next(iter(tokens))


def ack(ledger: Ledger, idents: list[str]) -> None:
    ledger.acknowledged([(ident, token_of(ledger, ident)) for ident in idents])


def fail(ledger: Ledger, ident: str, error: str, **options) -> None:
    ledger.failed(ident, token_of(ledger, ident), error, **options)


def test_the_window_bounds_what_is_in_flight(ledger: Ledger):
    assert dispatch(ledger, ledger.fresh()) == ["id0", "id1", "id2", "id3"]
    assert ledger.fresh() == []
    ack(ledger, ["id1", "id3"])
    assert dispatch(ledger, ledger.fresh()) == ["id4", "id5"]


def test_acknowledged_rows_leave_the_journal(ledger: Ledger):
    dispatch(ledger, ledger.fresh())
    ack(ledger, ["id0", "id2"])
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
        ack(ledger, [f"id{n}"])
    assert ledger.counts["redelivered"] == 0


def test_the_head_of_the_queue_is_resent_one_lease_after_its_turn(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    clock[0] = 5.0
    ack(ledger, ["id1"])  # the pipeline moves, but id0 is not acknowledged
    clock[0] = LEASE - 0.01
    assert ledger.due() == []
    clock[0] = LEASE
    # Only the head's clock started at dispatch; id2 and id3 still wait behind id0.
    assert ids(ledger.due()) == ["id0"]


def test_an_article_lost_behind_others_comes_back_after_they_are_done(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())  # id0..id3; id1 is lost
    clock[0] = 2.0
    ack(ledger, ["id0", "id2", "id3"])
    dispatch(ledger, ledger.fresh())  # more work keeps flowing: id4..id6
    clock[0] = 3.0
    ledger.due()  # id1's clock starts now: everything ahead of it is done
    clock[0] = 3.0 + LEASE - 0.01
    ack(ledger, ["id4"])
    assert "id1" not in ids(ledger.due())
    clock[0] = 3.0 + LEASE
    assert "id1" in ids(ledger.due())


def test_a_stalled_pipeline_resends_what_it_holds(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    clock[0] = 1.0
    ack(ledger, ["id0"])
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
    many.sent([msgspec.structs.replace(row, attempts=50)])
    assert many.in_flight["id9"].length == LEASE * MAX_BACKOFF_FACTOR


def test_a_stall_of_any_length_dead_letters_nothing(journal: Journal, clock):
    """At the default lease and attempts: the store is down for two hours, nothing is ever
    acknowledged. Every article is re-sent now and then, none is dead-lettered, and none has
    a failure against it (the old rule dead-lettered everything after ~46 leases)."""
    ledger = make_ledger(journal, clock, lease_seconds=60.0, max_attempts=5)
    dispatch(ledger, ledger.fresh())
    resent = 0
    while clock[0] < 2 * 3600:
        clock[0] += 10.0
        rows = ledger.due()
        resent += len(rows)
        dispatch(ledger, rows)
    assert resent > 4 * 5  # each of the four was sent again more than max_attempts times
    assert ledger.journal.dead_letter_count() == 0
    assert ledger.counts["dead_lettered"] == 0
    assert ledger.journal.record_failures(["id0"]) == {"id0": 1}  # none before
    assert sorted(ledger.in_flight) == ["id0", "id1", "id2", "id3"]


def test_an_article_lost_while_others_get_through_is_dead_lettered(ledger: Ledger, clock):
    """Lost again and again (it takes its extractor down, say) while the rest of the
    pipeline is acknowledged: that is evidence against it, and after max_attempts (3) it
    is set aside with the reason."""
    dispatch(ledger, ledger.fresh())  # id0..id3; id0 is never acknowledged
    others = iter(f"id{i}" for i in range(1, 50))
    for _ in range(3):
        for _ in range(3):
            clock[0] += 1.0
            ack(ledger, [next(others)])  # the pipeline moves on around it
            dispatch(ledger, ledger.fresh())
        ledger.due()  # id0's turn has come: its clock starts
        clock[0] += ledger.in_flight["id0"].length
        ack(ledger, [next(others)])
        dispatch(ledger, [r for r in ledger.due() if r.id == "id0"])
    (letter,) = ledger.journal.dead_letters()
    assert letter.id == "id0" and letter.attempts == 3
    assert "lost 3 times while the rest of the pipeline made progress" in letter.error
    assert "id0" not in ledger.in_flight and ledger.counts["dead_lettered"] == 1


def test_a_failure_is_retried_soon_then_dead_lettered_with_its_error(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    fail(ledger, "id1", "MemoryError")
    clock[0] = 1.0  # retry_seconds, not a lease, and not behind the queue
    assert ids(ledger.due()) == ["id1"]
    dispatch(ledger, ledger.journal.rows(["id1"]))
    fail(ledger, "id1", "MemoryError")
    assert ledger.journal.dead_letter_count() == 0
    dispatch(ledger, ledger.journal.rows(["id1"]))
    fail(ledger, "id1", "MemoryError")  # the third failure: max_attempts
    (letter,) = ledger.journal.dead_letters()
    assert (letter.id, letter.error, letter.attempts) == ("id1", "MemoryError", 3)
    assert ledger.journal.revive() == 1
    assert "id1" in ids(ledger.journal.after(0, 100))
    assert ledger.journal.dead_letter_count() == 0


def test_a_deterministic_failure_is_dead_lettered_at_once(ledger: Ledger):
    dispatch(ledger, ledger.fresh())
    fail(ledger, "id2", "ValueError: [E088] text too long", retryable=False)
    (letter,) = ledger.journal.dead_letters()
    assert (letter.id, letter.attempts) == ("id2", 1)
    assert "id2" not in ledger.in_flight


def test_a_late_ack_clears_a_dead_letter(ledger: Ledger):
    dispatch(ledger, ledger.fresh())
    fail(ledger, "id3", "ValueError", retryable=False)
    assert ledger.journal.dead_letter_count() == 1
    ack(ledger, ["id3"])  # an earlier dispatch was counted after all
    assert ledger.journal.dead_letter_count() == 0
    assert ledger.counts["dead_letters_cleared"] == 1


def test_a_lease_on_an_article_acked_meanwhile_is_dropped(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    ledger.journal.delete(["id0"])  # acked through an earlier dispatch
    clock[0] = 100.0
    assert "id0" not in ids(ledger.due())
    assert "id0" not in ledger.in_flight


def test_an_ack_without_a_token_this_ledger_issued_changes_nothing(ledger: Ledger):
    """A forged ack, or one for a dispatch of an earlier ledger process."""
    dispatch(ledger, ledger.fresh())
    real = token_of(ledger, "id0")
    ledger.acknowledged([("id0", real ^ 1), ("id1", 12345), ("id9", 1)])
    assert sorted(ledger.in_flight) == ["id0", "id1", "id2", "id3"]
    assert "id0" in ids(ledger.journal.after(0, 100))
    assert ledger.counts["acks_refused"] == 3 and ledger.counts["acknowledged"] == 0
    ledger.failed("id2", 777, "forged", retryable=False)
    assert ledger.journal.dead_letter_count() == 0
    ledger.acknowledged([("id0", real)])
    assert "id0" not in ids(ledger.journal.after(0, 100))


def test_an_ack_of_an_earlier_dispatch_still_counts(ledger: Ledger, clock):
    dispatch(ledger, ledger.fresh())
    first = token_of(ledger, "id0")
    clock[0] = 2 * LEASE
    dispatch(ledger, ledger.due())  # sent again with a new token; the first copy is slow
    assert len(ledger.in_flight["id0"].tokens) == 2
    ledger.acknowledged([("id0", first)])
    assert "id0" not in ledger.in_flight


def test_freshness_is_observed_from_acceptance_to_ack(journal, clock):
    """The ack comes after the commit that made the counts readable: its delay from the
    article's 202 (journal's accepted_at, this host's wall clock) is the freshness."""
    from common import metrics

    (row,) = journal.rows(["id0"])
    wall = [row.accepted_at + 1.5]
    ledger = Ledger(
        journal,
        window=4,
        lease_seconds=LEASE,
        max_attempts=3,
        now=lambda: clock[0],
        wall=lambda: wall[0],
        jitter=lambda: 0.0,
    )
    before = metrics.FRESHNESS.collect()[0].samples
    count = {s.name: s.value for s in before}
    dispatch(ledger, ledger.fresh())
    ledger.acknowledged([("id0", t) for t in ledger.in_flight["id0"].tokens])
    after = {s.name: s.value for s in metrics.FRESHNESS.collect()[0].samples}
    assert after["ingest_freshness_seconds_count"] == count["ingest_freshness_seconds_count"] + 1
    assert after["ingest_freshness_seconds_sum"] == pytest.approx(
        count["ingest_freshness_seconds_sum"] + 1.5
    )


def test_articles_given_back_go_again_at_once_with_no_failure_counted(ledger: Ledger):
    """A stopping extractor gives back the chunk it asked for ahead: those go out at the
    next scan, not one lease later, and count nothing against the articles; a give-back
    without a token this ledger issued changes nothing."""
    dispatch(ledger, ledger.fresh())
    assert ledger.due() == []
    taken = ledger.released([("id1", token_of(ledger, "id1")), ("id2", 12345)])
    assert taken == 1
    assert ids(ledger.due()) == ["id1"]  # the clock has not moved: no lease ran out
    assert ledger.journal.record_failures(["id1"]) == {"id1": 1}  # the first one counted
