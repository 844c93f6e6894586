"""Who asked the ledger for work, and how much each gets (services/frontend/ledger/wants.py)."""

from __future__ import annotations

from services.frontend.ledger.wants import PEER_SECONDS, WANT_TTL_SECONDS, Wants


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_asks_are_answered_oldest_first_and_once():
    wants = Wants(Clock())
    wants.ask(b"a", 1, 64)
    wants.ask(b"b", 1, 32)
    wants.ask(b"a", 1, 64)  # a repeat keeps a's place in line
    assert wants.waiting() == [(b"a", 64), (b"b", 32)]
    wants.answered(b"a")
    wants.ask(b"a", 1, 64)  # a repeat of an answered ask (it crossed the answer)
    assert wants.waiting() == [(b"b", 32)]
    wants.ask(b"a", 2, 64)  # a's next ask
    assert wants.waiting() == [(b"b", 32), (b"a", 64)]


def test_an_ask_not_repeated_expires_and_a_gone_extractor_is_forgotten():
    clock = Clock()
    wants = Wants(clock)
    wants.ask(b"a", 1, 64)
    wants.ask(b"b", 1, 64)
    wants.gone(b"b")
    assert wants.waiting() == [(b"a", 64)]
    clock.t += WANT_TTL_SECONDS + 0.1
    assert wants.waiting() == []
    assert not wants


def test_chunks_are_a_share_of_what_is_left_among_the_extractors_heard_lately():
    clock = Clock()
    wants = Wants(clock)
    assert wants.chunk(64, 1000) == 64  # nobody heard yet counts as one
    wants.ask(b"a", 1, 64)
    assert wants.chunk(64, 100) == 50  # one extractor: half of what is left
    wants.ask(b"b", 1, 64)
    assert wants.chunk(64, 100) == 25  # two: a quarter
    assert wants.chunk(64, 1) == 1
    assert wants.chunk(8, 1000) == 8  # never more than asked
    clock.t += PEER_SECONDS + 1
    wants.ask(b"a", 2, 64)  # b went quiet: a is alone again
    assert wants.chunk(64, 100) == 50
