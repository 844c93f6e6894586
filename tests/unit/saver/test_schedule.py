"""services.saver.schedule: gathering, pacing per publication, backoff per group."""

from __future__ import annotations

import pytest

from common.messages import Extraction
from services.saver.schedule import MAX_BACKOFF_SECONDS, CommitSchedule


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def result(ident: str, publication: str, token: int = 1) -> Extraction:
    return Extraction(ident, publication, [], "local", token)


def firestore_schedule(clock: Clock, **options) -> CommitSchedule:
    defaults = dict(per_publication=True, min_interval=1.0, gather_seconds=0.25, max_articles=3)
    return CommitSchedule(**{**defaults, **options}, clock=clock, jitter=lambda: 0.5)


def test_a_group_is_due_after_gathering_and_takes_at_most_max_articles():
    clock = Clock()
    schedule = firestore_schedule(clock)
    schedule.add(result("a1", "Pub"))
    assert schedule.next_due() is None
    assert schedule.seconds_to_next() == pytest.approx(0.25)
    for i in range(2, 6):
        schedule.add(result(f"a{i}", "Pub"))
    # Full (3 or more): due at once, three of them.
    group, results = schedule.next_due()
    assert [r.id for r in results] == ["a1", "a2", "a3"]
    schedule.committed(group, results)
    assert schedule.waiting() == 2


def test_each_publication_is_committed_at_most_once_per_interval():
    clock = Clock()
    schedule = firestore_schedule(clock)
    schedule.add(result("a1", "Pub"))
    clock.now += 0.25
    group, results = schedule.next_due()
    schedule.committed(group, results)
    schedule.add(result("a2", "Pub"))
    schedule.add(result("b1", "Other"))
    clock.now += 0.3
    # "Other" is due; "Pub" waits for its second to end even though it has gathered.
    group, results = schedule.next_due()
    assert (group.key, [r.id for r in results]) == ("Other", ["b1"])
    schedule.committed(group, results)
    assert schedule.next_due() is None
    assert schedule.seconds_to_next() == pytest.approx(0.7)
    clock.now += 0.7
    group, results = schedule.next_due()
    assert (group.key, [r.id for r in results]) == ("Pub", ["a2"])


def test_sqlite_has_one_group_and_no_pacing():
    clock = Clock()
    schedule = firestore_schedule(clock, per_publication=False, min_interval=0.0)
    schedule.add(result("a1", "Pub"))
    schedule.add(result("b1", "Other"))
    clock.now += 0.25
    group, results = schedule.next_due()
    assert [r.id for r in results] == ["a1", "b1"]
    schedule.committed(group, results)
    schedule.add(result("a2", "Pub"))
    clock.now += 0.25
    assert schedule.next_due() is not None  # no interval to wait for


def test_a_failed_group_backs_off_alone_and_the_others_go_on():
    clock = Clock()
    schedule = firestore_schedule(clock)
    schedule.add(result("h1", "Hot"))
    schedule.add(result("c1", "Calm"))
    clock.now += 0.25
    delays = []
    for _ in range(10):
        group, results = schedule.next_due()
        if group.key == "Calm":
            schedule.committed(group, results)
            schedule.add(result(f"c{clock.now}", "Calm"))
        else:
            delays.append(schedule.failed(group))  # ABORTED: too much contention
        clock.now += 1.0
    # Calm committed every second while Hot backed off, doubling (jitter 0.5 -> 1x).
    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert max(delays) <= MAX_BACKOFF_SECONDS * 1.5
    assert schedule.waiting() == 2  # the Hot article still waits, and one new Calm one


def test_a_redelivery_is_kept_beside_the_first_so_both_tokens_are_acked():
    clock = Clock()
    schedule = firestore_schedule(clock)
    schedule.add(result("a1", "Pub", token=1))
    schedule.add(result("a1", "Pub", token=2))
    clock.now += 0.25
    group, results = schedule.next_due()
    assert [(r.id, r.token) for r in results] == [("a1", 1), ("a1", 2)]
    schedule.committed(group, results)
    assert schedule.waiting() == 0


def test_jitter_spreads_backoffs():
    clock = Clock()
    draws = iter([0.0, 1.0])
    schedule = CommitSchedule(
        per_publication=True,
        min_interval=1.0,
        gather_seconds=0.0,
        max_articles=10,
        clock=clock,
        jitter=lambda: next(draws),
    )
    schedule.add(result("a", "A"))
    schedule.add(result("b", "B"))
    first, _ = schedule.next_due()
    assert schedule.failed(first) == pytest.approx(0.05)
    second, _ = schedule.next_due()
    assert second is not first
    assert schedule.failed(second) == pytest.approx(0.15)


def test_a_group_is_due_once_results_stop_arriving_or_at_the_gather_limit():
    clock = Clock()
    schedule = CommitSchedule(
        per_publication=False,
        min_interval=0.0,
        gather_seconds=0.25,
        max_articles=100,
        quiet_seconds=0.05,
        clock=clock,
    )
    # A burst: results 10 ms apart keep the group gathering...
    for i in range(5):
        schedule.add(result(f"a{i}", "Pub"))
        clock.now += 0.01
        assert schedule.next_due() is None
    # ... and once none came for quiet_seconds it is due, long before gather_seconds.
    clock.now += 0.04
    group, results = schedule.next_due()
    assert len(results) == 5
    schedule.committed(group, results)
    # A steady trickle never falls quiet: gather_seconds still bounds the wait.
    for i in range(30):
        schedule.add(result(f"b{i}", "Pub"))
        if schedule.next_due() is not None:
            break
        clock.now += 0.01
    assert clock.now - 100.0 - 0.09 == pytest.approx(0.25)


def test_quiet_seconds_zero_always_gathers():
    clock = Clock()
    schedule = firestore_schedule(clock, max_articles=100)
    schedule.add(result("a1", "Pub"))
    clock.now += 0.2
    assert schedule.next_due() is None
    clock.now += 0.05
    assert schedule.next_due() is not None
