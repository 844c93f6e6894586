"""The extractors waiting for work from this ledger, and how much each gets.

Dispatch is pulled, not pushed (the ZeroMQ guide's load-balancing pattern): an extractor
sends a `Want` (its next chunk: at most `room` articles) when it has nothing left, and the
ledger answers it once, with work from the journal. So work waits in the journal, never in
the queue of a busy extractor, and whoever is free takes the next chunk.

How much a chunk holds is guided by what is left (guided self-scheduling): a full `room`
while the journal holds plenty, then smaller chunks as it runs dry, each about
1/(2 x extractors) of what is left. At the end of a burst every extractor then finishes
within about one small chunk of the others, instead of one holding a full batch (1-1.5 s
of NER) while the other's core idles (bench/RESULTS.md, "Pulled dispatch").
No sockets here: tests drive it directly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import msgspec

# An ask not repeated for this long is dropped: its extractor is gone (an extractor that
# waits repeats its ask every WANT_REPEAT_SECONDS, services/extractor/inbox.py).
WANT_TTL_SECONDS = 5.0
# An extractor that asked within this long counts among those the work is shared by.
PEER_SECONDS = 10.0
# Asks answered, remembered per extractor so that a repeat of one is not answered twice.
MAX_PEERS_REMEMBERED = 10_000


class Waiting(msgspec.Struct):
    seq: int
    room: int
    asked_at: float


class Wants:
    """Open asks by extractor (its ZeroMQ routing id), oldest first."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._waiting: dict[bytes, Waiting] = {}
        self._answered: dict[bytes, int] = {}  # extractor -> seq of its last answered ask
        self._heard: dict[bytes, float] = {}  # extractor -> when it last asked

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def __len__(self) -> int:
        return len(self._waiting)

    def ask(self, peer: bytes, seq: int, room: int) -> None:
        """Record an ask; a repeat of one already answered changes nothing, and a repeat of
        an open one keeps its place in line."""
        now = self._now()
        self._heard.pop(peer, None)
        self._heard[peer] = now
        if seq <= self._answered.get(peer, -1):
            return
        waiting = self._waiting.get(peer)
        if waiting is not None and waiting.seq == seq:
            waiting.asked_at = now
            return
        self._waiting.pop(peer, None)
        self._waiting[peer] = Waiting(seq, room, now)
        self._forget_old(now)

    def waiting(self) -> list[tuple[bytes, int]]:
        """The open asks, oldest first, as (extractor, room); expired ones dropped."""
        now = self._now()
        for peer in [p for p, w in self._waiting.items() if now - w.asked_at > WANT_TTL_SECONDS]:
            del self._waiting[peer]
        return [(peer, w.room) for peer, w in self._waiting.items()]

    def answered(self, peer: bytes) -> None:
        """The extractor got its chunk: its ask is closed."""
        waiting = self._waiting.pop(peer, None)
        if waiting is not None:
            self._answered.pop(peer, None)
            self._answered[peer] = waiting.seq

    def gone(self, peer: bytes) -> None:
        """The extractor is not connected any more: forget its ask."""
        self._waiting.pop(peer, None)

    def peers(self) -> int:
        """How many extractors asked lately (at least 1)."""
        now = self._now()
        return max(1, sum(1 for t in self._heard.values() if now - t <= PEER_SECONDS))

    def chunk(self, room: int, left: int) -> int:
        """How many articles to answer an ask of `room` with, `left` waiting in the journal:
        about 1/(2 x extractors) of what is left, at least 1, at most `room`."""
        return max(1, min(room, math.ceil(left / (2 * self.peers()))))

    def _forget_old(self, now: float) -> None:
        for peer in [p for p, t in self._heard.items() if now - t > PEER_SECONDS]:
            del self._heard[peer]
        while len(self._answered) > MAX_PEERS_REMEMBERED:
            self._answered.pop(next(iter(self._answered)))
