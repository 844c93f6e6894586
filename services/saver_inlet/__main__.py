"""Saver inlet: the stable results endpoint between the two elastic pools.

Pattern: streamer (ZeroMQ guide, "zmq_proxy"). Extractors and savers both only connect, so
either pool scales alone; this process owns the two ports. What it holds when it dies is
re-sent by the ledger once its lease runs out. It forwards frames without decoding them
(the savers validate every one); MAXMSGSIZE bounds what it will take.

    front  PULL  bind  settings.results_in_endpoint   <- extractors (connect, PUSH)
    back   PUSH  bind  settings.results_out_endpoint  -> savers (connect, PULL)
"""

from __future__ import annotations

import logging
import signal

import zmq

from common.config import Settings, load_settings
from common.lifecycle import configure_logging
from common.sockets import MeshSockets

log = logging.getLogger("inlet")


def run(settings: Settings) -> None:
    sockets = MeshSockets(settings)
    front = sockets.bind(zmq.PULL, settings.results_in_endpoint)
    back = sockets.bind(zmq.PUSH, settings.results_out_endpoint)
    log.info("saver inlet up")
    try:
        while True:
            try:
                zmq.proxy(front, back)
            except zmq.Again:
                # libzmq 4.3's proxy gives up when a socket wakes it with nothing to read
                # (seen with CURVE handshakes and heartbeats on tcp): nothing was taken off
                # either socket, so carry on.
                continue
    except zmq.ContextTerminated:
        pass
    finally:
        sockets.close()
        log.info("saver inlet stopped")


def main() -> None:
    settings = load_settings()
    configure_logging(settings, "inlet")
    # zmq.proxy blocks in C: let SIGTERM end the process at once (nothing here is durable).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    run(settings)


if __name__ == "__main__":
    main()
