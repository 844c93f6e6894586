"""Where an extractor's work comes from: it asks every ledger for its next chunk.

Each ledger's dispatch is a ROUTER; the extractor holds one DEALER per ledger (by id, from
configuration), so it can ask each one on its own. It asks a ledger (a `Want` of
`batch_size`) only once that ledger's last chunk has arrived, and takes chunks as they
come: what an extractor holds is the batch it is on plus at most one chunk per ledger,
never a queue it cannot share (services/frontend/ledger/wants.py says why); and it asks
for the next chunk before extracting this one only while the ledger has plenty
(`Inbox.receive`).

An ask is repeated every WANT_REPEAT_SECONDS while unanswered (same seq: a ledger answers
it once), so a ledger that restarted, or was not there yet, hears it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import zmq

from common import metrics
from common.messages import Article, Want, decode_or_drop, encode
from common.sockets import MeshSockets

log = logging.getLogger("extractor")

WANT_REPEAT_SECONDS = 1.0
# Chunks queued per ledger connection: one is asked for at a time (two when a restarted
# ledger answers a repeat while the first answer was on its way); the rest is to spare.
CHUNKS_QUEUED = 4


class Inbox:
    """One DEALER per ledger; `receive` returns the articles of the chunks that arrived."""

    def __init__(
        self,
        sockets: MeshSockets,
        ledgers: dict[str, str],
        room: int,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.room = room
        self._now = now
        self._sockets: dict[str, zmq.Socket] = {}
        for ledger, endpoint in ledgers.items():
            socket = sockets.connect(zmq.DEALER, endpoint, hwm=CHUNKS_QUEUED)
            socket.setsockopt(zmq.IMMEDIATE, 1)  # an ask waits for a live ledger, not a queue
            self._sockets[ledger] = socket
        self._poller = zmq.Poller()
        for socket in self._sockets.values():
            self._poller.register(socket, zmq.POLLIN)
        self._seq = 0
        self._open: dict[str, tuple[int, float]] = {}  # ledger -> (seq, last sent) of its ask

    def receive(self, timeout_ms: int) -> list[Article]:
        """Ask every ledger that owes nothing, then wait up to `timeout_ms` for chunks;
        returns the articles of every chunk that arrived (a frame that is not an Article is
        dropped and logged).

        A ledger that answered with a full chunk has plenty left: it is asked for the next
        one at once, so that chunk is on its way while this one is extracted (the round
        trip, ~2 ms per batch, is then not idle time). A ledger that answered with less is
        running dry, and is asked only when this batch is done, so its last chunks go to
        whichever extractor is free then."""
        self._ask(self._sockets)
        events = dict(self._poller.poll(timeout_ms))
        articles: list[Article] = []
        plenty: list[str] = []
        for ledger, socket in self._sockets.items():
            if socket in events:
                taken = self._take(ledger, socket)
                articles += taken
                if len(taken) >= self.room:
                    plenty.append(ledger)
        self._ask(plenty)
        return articles

    def waiting(self) -> list[Article]:
        """The articles of every chunk that arrived and was not taken yet, without asking
        for more (for an extractor that stops: it gives them back)."""
        articles: list[Article] = []
        for ledger, socket in self._sockets.items():
            articles += self._take(ledger, socket)
        return articles

    def _ask(self, ledgers: Iterable[str]) -> None:
        now = self._now()
        for ledger in ledgers:
            socket = self._sockets[ledger]
            opened = self._open.get(ledger)
            if opened is not None and now - opened[1] < WANT_REPEAT_SECONDS:
                continue
            if opened is None:
                self._seq += 1
                seq = self._seq
            else:
                seq = opened[0]
            try:
                socket.send(encode(Want(seq, self.room)), zmq.NOBLOCK)
            except zmq.Again:
                continue  # not connected (yet): ask again on the next call
            self._open[ledger] = (seq, now)

    def _take(self, ledger: str, socket: zmq.Socket) -> list[Article]:
        articles: list[Article] = []
        while True:
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return articles
            self._open.pop(ledger, None)  # answered: ask again on the next call
            if len(frames) > self.room:
                metrics.FRAMES_DROPPED.inc(len(frames))
                log.warning("dropped a chunk larger than asked", extra={"frames": len(frames)})
                continue
            for frame in frames:
                message = decode_or_drop(frame, log, "extractor inbox")
                if isinstance(message, Article):
                    articles.append(message)
