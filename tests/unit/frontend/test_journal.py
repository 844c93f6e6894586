from __future__ import annotations

from pathlib import Path

from services.frontend.journal import Entry, Journal


def entries(n: int, start: int = 0) -> list[Entry]:
    return [Entry(f"id{i}", "Pub", f"text {i}") for i in range(start, start + n)]


def test_append_is_ordered_and_ignores_known_ids(tmp_path: Path):
    journal = Journal(tmp_path / "j.sqlite3")
    journal.append(entries(3))
    journal.append(entries(3, start=2))  # id2 again
    rows = journal.after(0, 100)
    assert [r.id for r in rows] == ["id0", "id1", "id2", "id3", "id4"]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert journal.after(rows[2].seq, 1)[0].id == "id3"


def test_delete_and_backlog(tmp_path: Path):
    clock = [1000.0]
    journal = Journal(tmp_path / "j.sqlite3", now=lambda: clock[0])
    assert journal.backlog().articles == 0
    assert journal.backlog().oldest_age_seconds is None
    journal.append(entries(4))
    clock[0] += 7.5
    assert journal.backlog().articles == 4
    assert journal.backlog().oldest_age_seconds == 7.5
    journal.delete(["id0", "id2", "unknown"])
    assert [r.id for r in journal.rows(["id0", "id1", "id2", "id3"])] == ["id1", "id3"]


def test_seq_is_never_reused_after_deletes(tmp_path: Path):
    journal = Journal(tmp_path / "j.sqlite3")
    journal.append(entries(2))
    last = journal.after(0, 10)[-1].seq
    journal.delete(["id0", "id1"])
    journal.append(entries(1, start=5))
    assert journal.after(0, 10)[0].seq > last


def test_rows_survive_reopening(tmp_path: Path):
    Journal(tmp_path / "j.sqlite3").append(entries(2))
    assert len(Journal(tmp_path / "j.sqlite3").after(0, 10)) == 2


def test_attempts_are_recorded(tmp_path: Path):
    journal = Journal(tmp_path / "j.sqlite3")
    journal.append(entries(2))
    journal.record_attempts(["id1"])
    journal.record_attempts(["id1"])
    assert [r.attempts for r in journal.after(0, 10)] == [0, 2]


def test_backlog_bound_is_an_upper_bound(tmp_path: Path):
    journal = Journal(tmp_path / "j.sqlite3")
    assert journal.backlog_bound() == 0
    journal.append(entries(5))
    assert journal.backlog_bound() == 5
    journal.delete(["id1", "id2"])
    assert journal.backlog().articles == 3 <= journal.backlog_bound()
    journal.delete(["id0"])
    assert journal.backlog_bound() == 2


def test_bury_and_revive(tmp_path: Path):
    journal = Journal(tmp_path / "j.sqlite3")
    journal.append(entries(3))
    journal.record_attempts(["id1"])
    journal.bury({"id1": "ValueError: boom"})
    assert [r.id for r in journal.after(0, 10)] == ["id0", "id2"]
    (letter,) = journal.dead_letters()
    assert (letter.id, letter.attempts, letter.error) == ("id1", 1, "ValueError: boom")
    assert journal.revive(["nope"]) == 0
    assert journal.revive(["id1"]) == 1
    revived = journal.rows(["id1"])[0]
    assert revived.attempts == 0 and revived.seq > journal.rows(["id2"])[0].seq
    assert journal.dead_letter_count() == 0
