"""A host with a key pair the fleet never authorized, run inside its own namespace.

It knows the fleet's endpoints and the server's public key (public knowledge), and tries
what a real host does: take articles from a ledger, push a forged result to the saver inlet,
ask the control server for its status. It prints one JSON line of what it got: the test
expects nothing, and every handshake refused.

    python -m tests.e2e.multihost.rogue KEY_DIR DISPATCH RESULTS_IN CONTROL_COMMANDS
"""

from __future__ import annotations

import contextlib
import json
import sys
import time

import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from common.messages import Entity, Extraction, Want, encode

SECONDS = 6.0


def main() -> None:
    key_dir, dispatch, results_in, control = sys.argv[1:5]
    public, secret = zmq.auth.load_certificate(f"{key_dir}/rogue.key_secret")
    server, _ = zmq.auth.load_certificate(f"{key_dir}/server.key")
    context = zmq.Context()

    def curve(kind: int, endpoint: str) -> tuple[zmq.Socket, zmq.Socket]:
        socket = context.socket(kind)
        socket.linger = 0
        if kind in (zmq.PUSH, zmq.DEALER):
            socket.setsockopt(zmq.IMMEDIATE, 1)  # a send succeeds only over a handshake
        socket.curve_publickey, socket.curve_secretkey = public, secret
        socket.curve_serverkey = server
        monitor = socket.get_monitor_socket()
        socket.connect(endpoint)
        return socket, monitor

    inbox, inbox_events = curve(zmq.DEALER, dispatch)  # as an extractor: asks for work
    results, results_events = curve(zmq.PUSH, results_in)
    request, request_events = curve(zmq.REQ, control)
    forged = Extraction(
        "rogue-1", "Forged News", [Entity("k" * 24, "Nobody", "PERSON", 1000)], "front1", 1
    )
    request.send(b"\x00", zmq.NOBLOCK)  # queued; it must never reach the server
    got = {"articles": 0, "control_answered": False, "sent_forged": False}
    events: dict[str, list[str]] = {"dispatch": [], "results_in": [], "control": []}
    deadline = time.monotonic() + SECONDS
    poller = zmq.Poller()
    poller.register(inbox, zmq.POLLIN)
    poller.register(request, zmq.POLLIN)
    monitors = {inbox_events: "dispatch", results_events: "results_in", request_events: "control"}
    for monitor in monitors:
        poller.register(monitor, zmq.POLLIN)
    while time.monotonic() < deadline:
        ready = dict(poller.poll(200))
        if inbox in ready:
            got["articles"] += len(inbox.recv_multipart())
        if request in ready:
            request.recv()
            got["control_answered"] = True
        for monitor, name in monitors.items():
            if monitor in ready:
                event = recv_monitor_message(monitor)["event"]
                events[name].append(zmq.Event(event).name)
        with contextlib.suppress(zmq.Again):  # only possible over a completed handshake
            inbox.send(encode(Want(1, 64)), zmq.NOBLOCK)
        if not got["sent_forged"]:
            try:  # only possible over a completed handshake
                results.send(encode(forged), zmq.NOBLOCK)
                got["sent_forged"] = True
            except zmq.Again:
                pass
    print(json.dumps({**got, "events": events}))
    context.destroy(linger=0)


if __name__ == "__main__":
    main()
