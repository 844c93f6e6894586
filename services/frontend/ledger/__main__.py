"""The ledger process: the one dispatcher of a frontend host's intake journal.

Pattern: a credit-windowed pipeline with acknowledgements (ZeroMQ guide, "reliable
pipeline"), pulled by its workers (the guide's load-balancing pattern). It answers each
extractor's ask (`Want`) with a chunk of the journal in commit order, keeps at most `window`
articles unacknowledged, deletes the rows savers acknowledge, and re-sends what is late
(the bookkeeping is `dispatcher.Ledger`; who asked and how much each gets, `wants.Wants`).

    dispatch  ROUTER  bind  settings.dispatch_endpoint  <-> extractors (connect, DEALER):
                            [their Want] in, [chunk of Article frames] out
    replies   PULL    bind  settings.ack_endpoint  <- savers' Acks, extractors' Failures and
                                                    Released (given back by one stopping)
    appends   PULL    bind  settings.journal_appends_endpoint <- frontend workers: rows journaled
"""

from __future__ import annotations

import logging
import time

import zmq

from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import (
    Ack,
    Article,
    Failure,
    Message,
    Released,
    Want,
    decode_or_drop,
    encode,
)
from common.sockets import MeshSockets, receive_pairs
from services.frontend.appends import listen, take_all
from services.frontend.journal import GateKeeper, Journal, Row
from services.frontend.ledger.dispatcher import EXPIRY_SCAN_SECONDS, Ledger
from services.frontend.ledger.wants import Wants

log = logging.getLogger("ledger")

# Asks taken off the socket per wake-up, so replies and lease scans keep their turn.
MAX_ASKS_PER_WAKE = 1000


def run(settings: Settings, stop: StopFlag, *, scan_seconds: float = EXPIRY_SCAN_SECONDS) -> None:
    sockets = MeshSockets(settings)
    # Extractors ask for work (wants.py): a send to one that is gone fails (ROUTER_MANDATORY)
    # instead of vanishing, and its articles stay in the journal for the next ask.
    dispatch = sockets.bind(zmq.ROUTER, settings.dispatch_endpoint)
    dispatch.setsockopt(zmq.ROUTER_MANDATORY, 1)
    replies = sockets.bind(zmq.PULL, settings.ack_endpoint)
    appends = listen(sockets, settings.journal_appends_endpoint)

    journal = Journal(settings.journal_path, synchronous=settings.journal_synchronous)
    ledger = Ledger(
        journal,
        window=settings.window,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
    )
    wants = Wants()
    resends: list[Row] = []  # late rows waiting for an extractor's ask
    # The journal connection belongs to this thread: the control link's thread reads a
    # snapshot refreshed here, never the journal itself.
    snapshot: dict[str, float] = ledger.counters()
    # The ledger closes and opens its host's journal gate too: with every frontend worker
    # gone, a stop-writes is still applied where it matters.
    gate = GateKeeper(settings.journal_path, synchronous=settings.journal_synchronous)
    control = ControlLink(settings, "ledger", lambda: snapshot, apply=gate).start()
    poll_ms = int(settings.ledger_poll_seconds * 1000)
    next_scan = 0.0
    poller = zmq.Poller()
    poller.register(replies, zmq.POLLIN)
    poller.register(dispatch, zmq.POLLIN)
    listening = False
    log.info("ledger up", extra={"window": settings.window, "lease": settings.lease_seconds})
    try:
        while not stop:
            # Sleep until there is something to do: a reply; an extractor's ask; while one
            # waits, a frontend worker's signal that it journaled rows (new rows change
            # nothing while nobody asks); the next lease scan; and, while one waits, at the
            # latest poll_ms, for a signal missed. Waking every 20 ms to look was most of the
            # ledger's CPU, loaded or idle (bench/RESULTS.md, "A mesh that sleeps").
            if bool(wants) != listening:  # re-register only on a change
                listening = bool(wants)
                poller.register(appends, zmq.POLLIN if listening else 0)
            until_scan = max(1, int((next_scan - time.monotonic()) * 1000))
            events = dict(poller.poll(min(poll_ms, until_scan) if listening else until_scan))
            if appends in events:
                take_all(appends)  # the journal read below is what they asked for
            if dispatch in events:
                _hear_asks(dispatch, wants)

            # Replies: acks from savers (committed: forget them), failures from extractors.
            if replies in events:
                acked: list[tuple[str, int]] = []
                for message in _drain(replies):
                    if isinstance(message, Ack):
                        acked += [(a.id, a.token) for a in message.articles]
                    elif isinstance(message, Failure):
                        ledger.failed(
                            message.id, message.token, message.error, retryable=message.retryable
                        )
                    elif isinstance(message, Released):
                        taken = ledger.released([(a.id, a.token) for a in message.articles])
                        log.info("articles given back by a stopping extractor: %d", taken)
                ledger.acknowledged(acked)

            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + scan_seconds
                # The look control asked for last, heard before this look: a drain believes
                # a zero only from a look that follows its own request (mesh.drain).
                heard = control.heard_look()
                snapshot = {**heard, **ledger.counters()}
                # Leases that ran out, once the last ones found are all sent again (a row
                # found late twice before it went would burn two of its attempts).
                if not resends:
                    resends = ledger.due()
                    if resends:
                        log.warning(
                            "re-sending %d unacknowledged articles",
                            len(resends),
                            extra={"article_ids": [r.id for r in resends]},
                        )

            # Answer the extractors that asked: late rows first, then journaled rows never
            # sent, as far as the window allows.
            if wants:
                resends = _answer(dispatch, ledger, wants, resends, settings.ledger_id)
    finally:
        control.stop()
        sockets.close()
        journal.close()
        log.info("ledger stopped", extra={"in_flight": len(ledger.in_flight)})


def _hear_asks(socket: zmq.Socket, wants: Wants) -> None:
    """Record every ask waiting now (at most MAX_ASKS_PER_WAKE); anything that is not
    [routing id, Want] is dropped (and logged)."""
    for peer, message in receive_pairs(socket, MAX_ASKS_PER_WAKE, log, "ledger dispatch"):
        if isinstance(message, Want):
            wants.ask(peer, message.seq, message.room)


def _drain(socket: zmq.Socket) -> list[Message]:
    """Every reply waiting now; a frame that is not one is dropped (and logged)."""
    messages = []
    while True:
        try:
            frame = socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            return messages
        message = decode_or_drop(frame, log, "ledger replies")
        if isinstance(message, Ack | Failure | Released):
            messages.append(message)


def _answer(
    socket: zmq.Socket, ledger: Ledger, wants: Wants, resends: list[Row], ledger_id: str
) -> list[Row]:
    """Answer open asks, oldest first, each with one chunk: late rows first, then rows
    never sent, sized by what is left (`Wants.chunk`), until there is nothing to send (or
    the window is full: acks wake the loop). Returns the late rows still waiting."""
    resends = [row for row in resends if row.id in ledger.in_flight]  # not acked meanwhile
    for peer, room in wants.waiting():
        late = bool(resends)
        if late:
            rows, resends = resends[:room], resends[room:]
        else:
            left = ledger.undispatched()
            rows = ledger.fresh(limit=wants.chunk(room, left)) if left else []
        if not rows:
            break
        if _send(socket, peer, ledger, rows, ledger_id):
            wants.answered(peer)
            continue
        # Gone, or its queue is full: it asks again if it is there. Rows never sent are
        # read from the journal again (the cursor did not move); late rows wait here.
        wants.gone(peer)
        if late:
            resends = rows + resends
    return resends


def _send(socket: zmq.Socket, peer: bytes, ledger: Ledger, rows: list[Row], ledger_id: str) -> bool:
    """Send `rows` to one extractor as one message, each with a fresh token, and record
    them; False (nothing recorded) if that extractor is gone or cannot take it now."""
    tokens = [ledger.token() for _ in rows]
    frames = [
        encode(Article(row.id, row.publication, row.content, ledger_id, token))
        for row, token in zip(rows, tokens, strict=True)
    ]
    try:
        socket.send_multipart([peer, *frames], zmq.NOBLOCK)
    except zmq.ZMQError as error:
        if error.errno not in (zmq.EHOSTUNREACH, zmq.EAGAIN):
            raise
        return False
    ledger.sent(rows, tokens)
    return True


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "ledger")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
