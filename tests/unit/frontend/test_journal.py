from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from common.control import State
from services.frontend.journal import Entry, GateKeeper, Journal, WritesClosed


def opened(path: Path, **options) -> Journal:
    """A journal whose gate is open, as once a frontend process heard "accepting"."""
    journal = Journal(path, **options)
    journal.set_gate("accepting", 1)
    return journal


def entries(n: int, start: int = 0) -> list[Entry]:
    return [Entry(f"id{i}", "Pub", f"text {i}") for i in range(start, start + n)]


def test_append_is_ordered_and_ignores_known_ids(tmp_path: Path):
    journal = opened(tmp_path / "j.sqlite3")
    journal.append(entries(3))
    journal.append(entries(3, start=2))  # id2 again
    rows = journal.after(0, 100)
    assert [r.id for r in rows] == ["id0", "id1", "id2", "id3", "id4"]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert journal.after(rows[2].seq, 1)[0].id == "id3"


def test_delete_and_backlog(tmp_path: Path):
    clock = [1000.0]
    journal = opened(tmp_path / "j.sqlite3", now=lambda: clock[0])
    assert journal.backlog().articles == 0
    assert journal.backlog().oldest_age_seconds is None
    journal.append(entries(4))
    clock[0] += 7.5
    assert journal.backlog().articles == 4
    assert journal.backlog().oldest_age_seconds == 7.5
    journal.delete(["id0", "id2", "unknown"])
    assert [r.id for r in journal.rows(["id0", "id1", "id2", "id3"])] == ["id1", "id3"]


def test_seq_is_never_reused_after_deletes(tmp_path: Path):
    journal = opened(tmp_path / "j.sqlite3")
    journal.append(entries(2))
    last = journal.after(0, 10)[-1].seq
    journal.delete(["id0", "id1"])
    journal.append(entries(1, start=5))
    assert journal.after(0, 10)[0].seq > last


def test_rows_survive_reopening(tmp_path: Path):
    opened(tmp_path / "j.sqlite3").append(entries(2))
    assert len(opened(tmp_path / "j.sqlite3").after(0, 10)) == 2


def test_attempts_are_recorded(tmp_path: Path):
    journal = opened(tmp_path / "j.sqlite3")
    journal.append(entries(2))
    journal.record_attempts(["id1"])
    journal.record_attempts(["id1"])
    assert [r.attempts for r in journal.after(0, 10)] == [0, 2]


def test_backlog_bound_is_an_upper_bound(tmp_path: Path):
    journal = opened(tmp_path / "j.sqlite3")
    assert journal.backlog_bound() == 0
    journal.append(entries(5))
    assert journal.backlog_bound() == 5
    journal.delete(["id1", "id2"])
    assert journal.backlog().articles == 3 <= journal.backlog_bound()
    journal.delete(["id0"])
    assert journal.backlog_bound() == 2


def test_bury_and_revive(tmp_path: Path):
    journal = opened(tmp_path / "j.sqlite3")
    journal.append(entries(3))
    journal.record_failures(["id1"])
    journal.bury({"id1": "ValueError: boom"})
    assert [r.id for r in journal.after(0, 10)] == ["id0", "id2"]
    (letter,) = journal.dead_letters()
    assert (letter.id, letter.attempts, letter.error) == ("id1", 1, "ValueError: boom")
    assert journal.revive(["nope"]) == 0
    assert journal.revive(["id1"]) == 1
    revived = journal.rows(["id1"])[0]
    assert revived.attempts == 0 and revived.seq > journal.rows(["id2"])[0].seq
    assert journal.dead_letter_count() == 0


def test_the_gate_is_closed_until_a_state_is_heard(tmp_path: Path):
    journal = Journal(tmp_path / "j.sqlite3")
    with pytest.raises(WritesClosed, match="stopped"):
        journal.append(entries(1))
    assert journal.backlog().articles == 0
    journal.set_gate("accepting", 3)
    assert journal.append(entries(1)) == 1


def test_a_closed_gate_refuses_inside_the_transaction(tmp_path: Path):
    journal = opened(tmp_path / "j.sqlite3")
    other = Journal(tmp_path / "j.sqlite3")  # another process of the host, e.g. the ledger
    other.set_gate("stopped", 2)
    with pytest.raises(WritesClosed, match="stopped"):
        journal.append(entries(3))
    backlog = journal.backlog()
    assert (backlog.articles, backlog.gate_state, backlog.gate_seq) == (0, "stopped", 2)


def test_the_gate_never_goes_back_to_an_older_state(tmp_path: Path):
    journal = opened(tmp_path / "j.sqlite3")
    assert journal.set_gate("stopped", 5) == 5
    assert journal.set_gate("accepting", 4) == 5  # heard late by a slower process
    assert journal.gate() == ("stopped", 5)
    assert journal.set_gate("accepting", 6) == 6
    assert journal.append(entries(1)) == 1


def test_failures_are_counted_apart_from_dispatches(tmp_path: Path):
    journal = opened(tmp_path / "j.sqlite3")
    journal.append(entries(2))
    journal.record_attempts(["id0", "id1"])
    assert journal.record_failures(["id1"]) == {"id1": 1}
    assert journal.record_failures(["id1", "gone"]) == {"id1": 2}
    journal.bury({"id1": "lost"})
    (letter,) = journal.dead_letters()
    assert letter.attempts == 2  # failed attempts, not dispatches


def test_an_ack_clears_a_dead_letter(tmp_path: Path):
    journal = opened(tmp_path / "j.sqlite3")
    journal.append(entries(3))
    journal.bury({"id1": "lost"})
    assert journal.delete(["id0", "id1"]) == 1
    assert journal.dead_letter_count() == 0
    assert [r.id for r in journal.after(0, 10)] == ["id2"]


def test_a_journal_of_the_previous_version_is_upgraded_in_place(tmp_path: Path):
    path = tmp_path / "j.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL "
            "UNIQUE, publication TEXT NOT NULL, content TEXT NOT NULL, accepted_at REAL NOT "
            "NULL, attempts INTEGER NOT NULL DEFAULT 0);"
            "INSERT INTO journal (id, publication, content, accepted_at, attempts) "
            "VALUES ('old', 'Pub', 'text', 1.0, 2);"
        )
    journal = opened(path)
    assert [(r.id, r.attempts) for r in journal.after(0, 10)] == [("old", 2)]
    assert journal.record_failures(["old"]) == {"old": 1}


def test_the_gate_keeper_applies_a_state_then_confirms_what_it_may(tmp_path: Path):
    running_since = {"seq": None}
    keeper = GateKeeper(
        tmp_path / "j.sqlite3",
        running_since=lambda seq: seq if running_since["seq"] is None else running_since["seq"],
    )
    assert keeper(State("accepting", 1)) == 1
    journal = Journal(tmp_path / "j.sqlite3")
    assert journal.append(entries(1)) == 1
    running_since["seq"] = 1  # a write admitted under seq 1 is still running
    assert keeper(State("stopped", 2)) == 1  # the gate is closed, but not confirmed yet
    with pytest.raises(WritesClosed):
        journal.append(entries(1, start=1))
    running_since["seq"] = None
    assert keeper(State("stopped", 2)) == 2
