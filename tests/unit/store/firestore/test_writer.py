"""store.firestore.writer against Google's real emulator.

The contract suite (tests/contract) proves the store behaves like SQLite; these tests pin
what only Firestore has: markers that fail a commit whole, the first text kept through
create()/update() preconditions, and transient errors.
"""

from __future__ import annotations

import pytest
from google.api_core import exceptions as api_exceptions

from store.firestore import FirestoreStore
from store.firestore.plan import Article
from tests.unit.store.firestore.support import entity, entity_counts, extraction, record_commits

# -- markers that already exist ------------------------------------------------------------


def test_existing_markers_drop_only_their_articles(make_store, monkeypatch):
    store = make_store()
    store.commit([extraction("a1", "Pub", entity("Qantas")), extraction("a3", "Pub")])
    commits = record_commits(monkeypatch, store)

    batch = [
        extraction(i, "Pub", entity("Qantas"), entity(f"Only{i}")) for i in ["a1", "a2", "a3", "a4"]
    ]
    assert store.commit(batch) == ["a2", "a4"]

    # The first commit failed whole on the existing markers; the second carried the rest.
    assert commits == [["a1", "a2", "a3", "a4"], ["a2", "a4"]]
    counts = entity_counts(store, "Pub")
    assert counts[entity("Qantas").key] == ("Qantas", 3)  # a1 once, a2, a4
    assert entity("Onlya1").key not in counts  # a1 was counted before, without it
    assert entity("Onlya3").key not in counts
    assert counts[entity("Onlya2").key] == ("Onlya2", 1)
    assert store.publications()[0].articles == 4


def test_the_first_text_is_kept_across_savers(make_store):
    # Two stores = two saver processes: the second does not know the entity document exists,
    # guesses create(), fails on it, learns, and only increments.
    first, second = make_store(), make_store()
    assert first.commit([extraction("a1", "Pub", entity("Qantas"))]) == ["a1"]
    assert second.commit([extraction("a2", "Pub", entity("QANTAS"))]) == ["a2"]
    assert first.commit([extraction("a3", "Pub", entity("qantas"))]) == ["a3"]
    assert entity_counts(first, "Pub") == {entity("Qantas").key: ("Qantas", 3)}


def test_an_entity_document_deleted_behind_our_back_is_created_again(make_store):
    store = make_store()
    store.commit([extraction("a1", "Pub", entity("Qantas"))])
    key = entity("Qantas").key
    store.client.document("publications", "Pub", "entities", key).delete()
    # The store believes the document exists (update precondition) and learns otherwise.
    assert store.commit([extraction("a2", "Pub", entity("QANTAS"))]) == ["a2"]
    assert entity_counts(store, "Pub") == {key: ("QANTAS", 1)}


# -- transient errors ----------------------------------------------------------------------


class FakeClock:
    """Time that passes only when the store sleeps: the retry schedule without the wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def inject(
    monkeypatch: pytest.MonkeyPatch,
    store: FirestoreStore,
    errors: list[Exception],
    *,
    after_sending: bool = False,
) -> None:
    """Make the next commits fail with `errors` (one each), before or after really sending."""
    commit_once = store.writer._commit_once

    def faulty(pending: list[Article], token: str) -> None:
        if errors and after_sending:
            commit_once(pending, token)
        if errors:
            raise errors.pop(0)
        commit_once(pending, token)

    monkeypatch.setattr(store.writer, "_commit_once", faulty)


def test_a_transient_error_is_retried(make_store, monkeypatch):
    """UNAVAILABLE once, then success: retried after a backoff, counted once.

    The emulator cannot be made to answer UNAVAILABLE on demand, so this one fault is
    injected (the error is raised instead of sending the first commit); the retry itself
    commits to the real emulator.
    """
    clock = FakeClock()
    store = make_store(sleep=clock.sleep, clock=clock, retry_seconds=30.0)
    inject(monkeypatch, store, [api_exceptions.ServiceUnavailable("injected")])
    assert store.commit([extraction("a1", "Pub", entity("Qantas"))]) == ["a1"]
    assert len(clock.sleeps) == 1 and 0.05 <= clock.sleeps[0] <= 0.15
    assert entity_counts(store, "Pub") == {entity("Qantas").key: ("Qantas", 1)}


def test_a_commit_applied_before_its_error_is_not_applied_twice(make_store, monkeypatch):
    """DEADLINE_EXCEEDED after the server applied the commit (injected, as above).

    The retry finds the markers, sees its own commit token on them, and reports the
    articles as counted by this call without adding their counts again.
    """
    clock = FakeClock()
    store = make_store(sleep=clock.sleep, clock=clock, retry_seconds=30.0)
    inject(monkeypatch, store, [api_exceptions.DeadlineExceeded("injected")], after_sending=True)
    batch = [extraction("a1", "Pub", entity("Qantas")), extraction("a2", "Pub", entity("X"))]
    assert store.commit(batch) == ["a1", "a2"]
    assert entity_counts(store, "Pub")[entity("Qantas").key] == ("Qantas", 1)
    assert store.publications()[0].articles == 2
    # Another saver's marker is not mistaken for ours.
    assert make_store().commit(batch) == []


def test_transient_errors_are_retried_for_a_bounded_time_then_raised(make_store, monkeypatch):
    """Always UNAVAILABLE (injected): exponential backoff until retry_seconds, then raise."""
    clock = FakeClock()
    store = make_store(sleep=clock.sleep, clock=clock, retry_seconds=20.0)
    errors: list[Exception] = [api_exceptions.ServiceUnavailable("down") for _ in range(100)]
    inject(monkeypatch, store, errors)
    with pytest.raises(api_exceptions.ServiceUnavailable):
        store.commit([extraction("a1", "Pub", entity("Qantas"))])
    assert clock.now <= 20.0
    assert 4 <= len(clock.sleeps) < 20
    assert clock.sleeps[3] > clock.sleeps[0]  # growing (jitter is at most 1.5x vs 2x growth)
    assert store.counted(["a1"]) == set()


def test_a_permanent_error_is_not_retried(make_store, monkeypatch):
    """PERMISSION_DENIED (injected) is raised at once: waiting cannot fix it."""
    clock = FakeClock()
    store = make_store(sleep=clock.sleep, clock=clock, retry_seconds=30.0)
    inject(monkeypatch, store, [api_exceptions.PermissionDenied("no")])
    with pytest.raises(api_exceptions.PermissionDenied):
        store.commit([extraction("a1", "Pub", entity("Qantas"))])
    assert clock.sleeps == []


def test_a_precondition_failure_nothing_explains_is_raised_after_one_read(make_store, monkeypatch):
    """FAILED_PRECONDITION with no marker and no wrong guess (injected): not a conflict.

    One batched read shows nothing to drop or learn, so sending again cannot help: raised.
    """
    store = make_store()
    sends: list[int] = []
    commit_once = store.writer._commit_once

    def failing(pending: list[Article], token: str) -> None:
        sends.append(len(pending))
        if len(sends) == 1:
            raise api_exceptions.FailedPrecondition("injected")
        commit_once(pending, token)

    monkeypatch.setattr(store.writer, "_commit_once", failing)
    with pytest.raises(api_exceptions.FailedPrecondition):
        store.commit([extraction("a1", "Pub", entity("Qantas"))])
    assert sends == [1]
    assert store.counted(["a1"]) == set()


def test_by_default_a_transient_error_is_raised_at_once_for_the_saver_to_schedule(
    make_store, monkeypatch
):
    """The saver backs off the contended publication alone and commits the others
    meanwhile: the store must not sleep on ABORTED itself (injected, as above)."""
    clock = FakeClock()
    store = make_store(sleep=clock.sleep, clock=clock)
    inject(monkeypatch, store, [api_exceptions.Aborted("Too much contention (injected)")])
    with pytest.raises(api_exceptions.Aborted):
        store.commit([extraction("a1", "Pub", entity("Qantas"))])
    assert clock.sleeps == []
    assert store.counted(["a1"]) == set()
    assert store.commit([extraction("a1", "Pub", entity("Qantas"))]) == ["a1"]
