"""`receive_pairs` (common/sockets.py), the one way a ROUTER or a saver takes [key, message]
messages: over real sockets, bad shapes and bad payloads are dropped, never raised, and
no more than the limit is taken per call."""

from __future__ import annotations

import logging
import time

import zmq

from common.messages import Want, encode
from common.sockets import MeshSockets, receive_pairs

log = logging.getLogger("test")


def test_pairs_are_decoded_and_anything_else_dropped(mesh_sockets: MeshSockets, tmp_path):
    endpoint = f"ipc://{tmp_path}/run/pairs"
    router = mesh_sockets.bind(zmq.ROUTER, endpoint)
    dealer = mesh_sockets.connect(zmq.DEALER, endpoint)
    dealer.send(encode(Want(1, 8)))
    dealer.send_multipart([b"one", b"two"])  # three frames at the ROUTER: dropped
    dealer.send(b"\x93not a message")  # does not decode: dropped
    dealer.send(encode(Want(2, 8)))
    deadline = time.monotonic() + 5
    got: list[tuple[bytes, object]] = []
    while len(got) < 2 and time.monotonic() < deadline:
        router.poll(100)
        got += list(receive_pairs(router, 100, log, "test"))
    assert [message for _, message in got] == [Want(1, 8), Want(2, 8)]
    assert len({peer for peer, _ in got}) == 1  # the dealer's routing id, both times


def test_no_more_than_the_limit_per_call(mesh_sockets: MeshSockets, tmp_path):
    endpoint = f"ipc://{tmp_path}/run/limit"
    router = mesh_sockets.bind(zmq.ROUTER, endpoint)
    dealer = mesh_sockets.connect(zmq.DEALER, endpoint)
    for seq in range(5):
        dealer.send(encode(Want(seq, 1)))
    deadline = time.monotonic() + 5
    while router.getsockopt(zmq.EVENTS) & zmq.POLLIN == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # all five have arrived
    assert len(list(receive_pairs(router, 3, log, "test"))) == 3
    assert len(list(receive_pairs(router, 3, log, "test"))) == 2
