"""Saver inlet: the stable results endpoint between the two elastic pools, routing by
publication.

Pattern: a broker with affinity. Extractors and savers both only connect, so either pool
scales alone; this process owns the two ports. Each result arrives as [route key, result]
(the key is a digest of its publication, common.messages.route_key) and goes to the saver
that owns its key (routing.Savers): one saver per publication, so on Firestore each
document has one writer. The inlet never decodes a result (the savers validate each one);
MAXMSGSIZE bounds what it takes, and a message that is not two frames with a key of the
right size is dropped.

    front  PULL    bind  settings.results_in_endpoint   <- extractors (connect, PUSH)
    back   ROUTER  bind  settings.results_out_endpoint  -> savers (connect, DEALER)

A saver that is full holds the inlet back (and so the extractors: backpressure) rather
than have its results go elsewhere. With no saver at all, results wait in the sockets'
queues. What the inlet holds when it dies is re-sent by the ledger once its lease runs out.
"""

from __future__ import annotations

import errno
import logging

import zmq

from common import metrics
from common.config import Settings, load_settings
from common.control import ControlLink
from common.lifecycle import StopFlag, configure_logging
from common.messages import ROUTE_KEY_BYTES, SAVER_READY, SAVER_READY_SECONDS
from common.sockets import MeshSockets
from services.saver_inlet.routing import Savers

log = logging.getLogger("inlet")

# A saver silent for this long is forgotten (three missed SAVER_READY).
SAVER_TTL_SECONDS = 3 * SAVER_READY_SECONDS
# Messages moved per wake-up, so savers' announcements keep their turn.
FORWARD_LIMIT = 1024
# How often to retry a result held back by a full (or absent) saver.
HOLD_POLL_MS = 10


class Inlet:
    def __init__(self, settings: Settings, sockets: MeshSockets) -> None:
        self.front = sockets.bind(zmq.PULL, settings.results_in_endpoint)
        # Savers only announce themselves: their frames are tiny.
        self.back = sockets.bind(zmq.ROUTER, settings.results_out_endpoint, max_bytes=1024)
        # Raise instead of silently dropping a message to a saver that is gone or full.
        self.back.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.savers = Savers(SAVER_TTL_SECONDS)
        self.held: list[bytes] | None = None  # [key, result] not delivered yet
        self.forwarded = 0
        self.dropped = 0

    def counters(self) -> dict[str, float]:
        """What `ingest status` shows of the inlet (its reports to control)."""
        return {
            "forwarded": self.forwarded,
            "dropped": self.dropped,
            "savers": len(self.savers),
            "holding": int(self.held is not None),
        }

    def run(self, stop: StopFlag) -> None:
        # Take new results only when the last one found its saver.
        taking, holding = zmq.Poller(), zmq.Poller()
        for poller in (taking, holding):
            poller.register(self.back, zmq.POLLIN)
        taking.register(self.front, zmq.POLLIN)
        while not stop:
            if self.held is None:
                events = dict(taking.poll(1000))
            else:
                events = dict(holding.poll(HOLD_POLL_MS))
            if self.back in events:
                self._hear_savers()
            for saver in self.savers.expire():
                log.warning("saver silent; its publications move", extra={"saver": saver.hex()})
            if self.held is not None and self._deliver(self.held):
                self.held = None
            if self.held is None and self.front in events:
                self._forward()

    def _hear_savers(self) -> None:
        for _ in range(FORWARD_LIMIT):
            try:
                saver, *frames = self.back.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frames == [SAVER_READY]:
                self.savers.heard(saver)
            else:
                self.dropped += 1
                metrics.FRAMES_DROPPED.inc()
                log.warning("dropped a message from a saver", extra={"frames": len(frames)})

    def _forward(self) -> None:
        for _ in range(FORWARD_LIMIT):
            try:
                frames = self.front.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2 or len(frames[0]) != ROUTE_KEY_BYTES:
                self.dropped += 1
                metrics.FRAMES_DROPPED.inc()
                log.warning("dropped a result that is not [route key, result]")
                continue
            if not self._deliver(frames):
                self.held = frames
                return

    def _deliver(self, frames: list[bytes]) -> bool:
        """Send to the key's saver; False if it must wait (no saver, or its queue is full)."""
        while (saver := self.savers.owner(frames[0])) is not None:
            try:
                self.back.send_multipart([saver, *frames], zmq.NOBLOCK)
                self.forwarded += 1
                return True
            except zmq.Again:
                return False  # that saver is full: wait for it (backpressure)
            except zmq.ZMQError as error:
                if error.errno != errno.EHOSTUNREACH:
                    raise
                log.warning("saver gone; its publications move", extra={"saver": saver.hex()})
                self.savers.forget(saver)
        return False


def run(settings: Settings, stop: StopFlag) -> None:
    sockets = MeshSockets(settings)
    inlet = Inlet(settings, sockets)
    # Reads of plain ints from another thread: a report may be one message behind.
    control = ControlLink(settings, "saver-inlet", inlet.counters).start()
    log.info("saver inlet up")
    try:
        inlet.run(stop)
    finally:
        control.stop()
        sockets.close()
        log.info("saver inlet stopped")


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "inlet")
    run(settings, StopFlag.install())


if __name__ == "__main__":
    main()
